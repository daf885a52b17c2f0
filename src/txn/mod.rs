//! Transactions over the page file: open, snapshots, one writer, commit.
//!
//! [`Db`] is the handle; [`ReadTxn`] a snapshot; [`WriteTxn`] the single
//! writer. Shared state is split so that readers and the writer never wait
//! for each other: beginning or ending a read takes a short lock on the
//! published snapshot and the reader table; the writer holds its own lock for
//! its whole transaction and takes the snapshot lock only to publish a commit.

mod backup;
mod check;
mod open;
mod pages;
pub(crate) mod parked;
pub(crate) mod read;
mod readers;
pub(crate) mod relocate;
pub(crate) mod salvage;
mod sync;
pub(crate) mod table;
pub(crate) mod write;
mod writer_lock;

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::btree::node::Limits;
use crate::btree::Root;
use crate::error::{PageId, Result};
use crate::storage::extents::{ExtentSet, PageSet};
use crate::storage::file::DbFile;
use crate::storage::mapping::Mapping;
use crate::storage::meta::Meta;
use crate::storage::page::{Header, PageRef};
use crate::storage::unwritten::UnwrittenPages;
use crate::storage::verified::VerifiedPages;

pub use backup::SnapshotReport;
pub use check::CheckReport;

pub use read::ReadTxn;
pub use salvage::{LostPart, SalvageReport};
pub use table::{Entries, Table, TableCursor, TxnRead, MAX_TABLE_NAME};
pub use write::{WriteTxn, MAX_VALUE_LEN};

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// [`WriteTxn::commit`] returns only once the commit is on stable
    /// storage (one `fdatasync` for commits of up to 256 pages, two for
    /// larger ones). The default.
    #[default]
    Immediate,
    /// Commits are visible at once but not synced: they become durable at
    /// the next [`Db::sync`], the next `Immediate` commit, or when the last
    /// handle is dropped. Their pages stay in memory until then (up to
    /// [`Options::unwritten_limit`], past which they are written without a
    /// sync). A crash of the process, of the machine or of its power loses
    /// the commits since the last sync, never more, and never corrupts the
    /// file: no page the last durable commit reaches is overwritten before
    /// the next sync. For bulk loads and batched commits (etcd's backend
    /// batches the same way and relies on its write-ahead log for the rest).
    None,
}

/// Default of [`Options::unwritten_limit`]: 64 MiB.
pub const DEFAULT_UNWRITTEN_LIMIT: usize = 64 << 20;

/// How to open a database: a builder.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use revkv::{Durability, Options};
/// let db = Options::new()
///     .page_size(8192)
///     .durability(Durability::None)
///     .open(dir.path().join("bulk.db"))?;
/// assert_eq!(db.stats().page_size, 8192);
/// # Ok::<(), revkv::Error>(())
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) page_size: Option<u32>,
    pub(crate) durability: Durability,
    pub(crate) read_only: bool,
    pub(crate) create: bool,
    pub(crate) unwritten_limit: usize,
    pub(crate) lock_timeout: Duration,
    pub(crate) write_ahead_min: u64,
    /// Opened by `Db::salvage`: read-only, from this meta page of those
    /// with a valid checksum (0 the newest), whatever its commit's state
    /// (see `salvage`).
    pub(crate) salvage: Option<usize>,
    #[cfg(feature = "fault-injection")]
    pub(crate) observer: Option<Arc<dyn crate::storage::file::IoObserver>>,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// Defaults: 4 KiB pages for a new file, [`Durability::Immediate`],
    /// read-write, create the file if missing.
    pub fn new() -> Options {
        Options {
            page_size: None,
            durability: Durability::Immediate,
            read_only: false,
            create: true,
            unwritten_limit: DEFAULT_UNWRITTEN_LIMIT,
            lock_timeout: Duration::ZERO,
            write_ahead_min: sync::WRITE_AHEAD_MIN_PAGES,
            salvage: None,
            #[cfg(feature = "fault-injection")]
            observer: None,
        }
    }

    /// Page size for a new file: a power of two from 512 to 65536. For an
    /// existing file it must match the file's, or open fails with
    /// [`Error::PageSizeMismatch`](crate::Error::PageSizeMismatch); leave it
    /// unset to accept any.
    pub fn page_size(mut self, bytes: u32) -> Options {
        self.page_size = Some(bytes);
        self
    }

    /// When commits reach the disk; see [`Durability`].
    pub fn durability(mut self, durability: Durability) -> Options {
        self.durability = durability;
        self
    }

    /// How many bytes of pages [`Durability::None`] commits may keep in
    /// memory instead of writing them to the file (default 64 MiB).
    ///
    /// An unsynced commit promises nothing about the disk, so its pages stay
    /// in memory until the next durable commit or [`Db::sync`] writes the
    /// ones still in use; pages that a later commit of the same batch
    /// replaces (a tree's root and branches, rewritten by every commit) are
    /// never written at all. Past this limit a commit writes them out
    /// without syncing. 0 writes every commit's pages at once. Pages that a
    /// sync is writing in the background do not count (they leave memory
    /// when it ends), so memory may briefly hold up to twice the limit.
    pub fn unwritten_limit(mut self, bytes: usize) -> Options {
        self.unwritten_limit = bytes;
        self
    }

    /// Open without writing: takes a shared lock, so any number of read-only
    /// handles may share a file that no writer has open.
    pub fn read_only(mut self, read_only: bool) -> Options {
        self.read_only = read_only;
        self
    }

    /// Whether a missing file is created (ignored for read-only opens,
    /// which never create).
    pub fn create(mut self, create: bool) -> Options {
        self.create = create;
        self
    }

    /// How long open waits for the file's lock while another handle holds
    /// it, before failing with [`Error::Locked`](crate::Error::Locked)
    /// (default zero: fail at once). Waiting helps a short-lived process
    /// that opens a file right after another one closed it: a process that
    /// forked in between may hold the lock until its exec.
    pub fn lock_timeout(mut self, timeout: Duration) -> Options {
        self.lock_timeout = timeout;
        self
    }

    /// Routes every write and sync through `observer` (fault injection for
    /// tests).
    #[cfg(feature = "fault-injection")]
    pub fn io_observer(mut self, observer: Arc<dyn crate::storage::file::IoObserver>) -> Options {
        self.observer = Some(observer);
        self
    }

    /// The fewest pages held in memory for which a sync writes them ahead,
    /// outside the writer lock (see `txn::sync`); tests lower it to reach
    /// that path with small workloads.
    #[cfg(feature = "fault-injection")]
    pub fn write_ahead_min_pages(mut self, pages: u64) -> Options {
        self.write_ahead_min = pages;
        self
    }

    /// Opens (or creates) the database at `path`.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Db> {
        open::open(path.as_ref(), self)
    }
}

/// What one commit published: the snapshot new readers get.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published {
    pub txid: u64,
    pub catalog: Root,
    pub hwm: u64,
    pub freelist: (PageRef, u32),
    /// Pages 0..file_pages are in the file.
    pub file_pages: u64,
    /// Pages of commits up to this one are in the file; newer ones are in
    /// [`Shared::unwritten`].
    pub written: u64,
}

impl Published {
    pub fn new(m: &Meta, file_pages: u64, written: u64) -> Published {
        Published {
            txid: m.txid,
            catalog: m.catalog,
            hwm: m.hwm,
            freelist: (m.freelist, m.freelist_span),
            file_pages,
            written,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Space {
    file_len: u64,
    hwm: u64,
    unreferenced: u64,
    /// The last commit on stable storage.
    synced_txid: u64,
    /// Pages freed by each commit newer than the oldest open snapshot (at
    /// the last trim): what readers pin.
    pending: VecDeque<(u64, u64)>,
}

pub(crate) struct State {
    pub snapshot: Published,
    pub mapping: Arc<Mapping>,
    pub readers: readers::Readers,
    pub space: Space,
}

/// The writer's private state, guarded by the writer lock.
pub(crate) struct Writer {
    /// The last committed meta.
    pub meta: Meta,
    /// Pages that no snapshot can see: reusable now.
    pub free: ExtentSet,
    /// Pages the last commit does not reference: `free` plus `pending`.
    /// This is what the persisted free list holds.
    pub unreferenced: ExtentSet,
    /// Runs freed by each commit, held until no open snapshot predates it.
    pub pending: VecDeque<(u64, Vec<(PageId, u64)>)>,
    /// Runs freed by each commit that were allocated since the last sync:
    /// no meta on disk reaches them, so they wait only for readers.
    pub pending_volatile: VecDeque<(u64, Vec<(PageId, u64)>)>,
    /// How many entries at the front of `pending_volatile` have had the
    /// memory of their runs let go of where no open snapshot reaches them
    /// (the runs themselves still wait for every older snapshot).
    pub volatile_dropped: usize,
    /// The same for `pending`.
    pub pending_dropped: usize,
    /// Pages allocated since the last sync.
    pub allocated_since_sync: ExtentSet,
    pub pending_pages: u64,
    pub file_len: u64,
    pub mapping: Arc<Mapping>,
    /// Set when a commit failed after writing its meta: the disk's state is
    /// unknown, so no further commit may build on it.
    pub poisoned: Option<String>,
    /// Page buffers kept for reuse so small commits do not allocate.
    pub buffers: Vec<Box<[u8]>>,
    pub page_size: usize,
    /// The slot of `meta`.
    pub meta_slot: u64,
    /// The last commit known to be on stable storage, and its meta's slot.
    pub synced_txid: u64,
    pub durable_slot: u64,
    /// Pages written by commits after `synced_txid`.
    pub unsynced_pages: u64,
    /// Pages of every commit up to this one are in the file.
    pub written_txid: u64,
    /// Pages (first page of a run) in [`Shared::unwritten`] that the last
    /// commit still reaches: what the next write-out must write.
    pub unwritten_live: PageSet,
    /// Pages in [`Shared::unwritten`] that the last commit still reaches and
    /// that a sync's write-ahead already put in the file and synced: the
    /// next write-out retires them without writing them again.
    pub written_ahead: PageSet,
    /// Pages a write-ahead in flight is writing (see `txn::sync`): not
    /// reused until it ends.
    pub writing_ahead: BTreeSet<PageId>,
    /// The length a shrink left the file to be truncated to, in bytes: see
    /// [`Db::trim_file`].
    pub trim_to: Option<u64>,
    /// Runs freed for reuse while a write-ahead wrote them.
    pub deferred: Vec<(PageId, u64)>,
    /// Every page of commits up to this one that later commits still reach
    /// is on stable storage (a write-ahead synced them), though no meta of
    /// that commit need be: what a meta's `synced_txid` records. At least
    /// `synced_txid` once a durable commit passes it.
    pub data_synced_txid: u64,
    /// Pages put in the file (by a write-out or a write-ahead) that
    /// snapshots from before that still look for in memory.
    pub retired: VecDeque<Retired>,
    /// Retired or freed pages in memory that an open snapshot may read.
    pub held: Vec<Held>,
    /// The open snapshots' commits, ascending (a buffer kept between
    /// calls of [`Writer::release_pending`]).
    pub snapshots: Vec<u64>,
    /// Bytes of the pages a write-ahead in flight is writing: they leave
    /// memory when it ends, so they do not count towards the unwritten
    /// limit meanwhile.
    pub writing_ahead_bytes: usize,
}

/// Most retired pages whose memory one [`Writer::release_pending`] frees
/// at the begin of a write transaction.
pub(crate) const RETIRE_PER_CALL: usize = 256;
/// The same at the begin of a transaction to be parked, which serves
/// hundreds of writes (see `txn::parked`).
pub(crate) const RETIRE_PER_PARKED: usize = 4096;
/// Most page buffers kept for reuse: allocating fresh ones costs a page
/// fault and zeroing each (a fifth of a batched writer's time when this
/// was 1024).
const BUFFER_POOL: usize = 4096;

/// Pages in memory kept for an open snapshot that may read them there.
///
/// A snapshot of commit `s` reaches only pages of commits up to `s`, and
/// the snapshots that are open can only end (new ones are of the latest
/// commit). So a page of commit `p` that is in the file (retired) or
/// freed is needed in memory only while a snapshot of a commit in
/// `p..until` is open: `until` is the first commit whose snapshots read
/// the page from the file (retired pages) or do not reach it (freed
/// ones). Such pages wait here, not in order behind every older snapshot:
/// a long-lived one (a pinned stream) then holds only the pages it can
/// reach, not every page written while it lives.
pub(crate) struct Held {
    /// A snapshot that may read them: they are looked at again once it has
    /// ended. 0 for pages the write-ahead in flight lists: looked at again
    /// at every call (a snapshot of commit 0, if one is open, only delays
    /// them).
    pub waits_for: u64,
    pub until: u64,
    /// A page at one of the ids from a later commit is another page (the
    /// id was reused) and stays.
    pub newest: u64,
    pub ids: Vec<PageId>,
}

/// Pages in the file whose copies in memory wait for older snapshots.
pub(crate) struct Retired {
    /// Snapshots of commits before this one may read the pages from memory.
    pub read_before: u64,
    /// The newest commit whose buffers these are: a buffer with a later txid
    /// is a newer page at a reused id, and stays.
    pub written: u64,
    pub ids: Vec<PageId>,
}

impl Writer {
    /// Lets go of the memory of pages no open snapshot reads there any
    /// more, and moves pages freed by commits at or before the oldest open
    /// snapshot (all if none) and already durable to the free set. `open`
    /// holds the open snapshots' commits, ascending.
    pub fn release_pending(&mut self, open: &[u64], unwritten: &UnwrittenPages, budget: usize) {
        let oldest = open.first().copied();
        let seen = |txid: u64| oldest.is_some_and(|o| txid > o);
        // Memory is let go of a bounded number of pages per call (each
        // write transaction's begin calls this under the writer lock): a
        // write-ahead retires thousands at once, and a writer should not
        // wait for all of them to be freed.
        //
        // Retirement goes on while a write-ahead is in flight (under a
        // steady write load one nearly always is, and holding everything
        // back let memory grow with the load: 1 GB over 300k txns at 1M
        // keys), except for the pages that write-ahead lists: it reads
        // those from memory without the lock. They are held (see `Held`)
        // and looked at again at the next call.
        //
        // Nor does a long-lived snapshot hold back what it cannot reach
        // (see `Held`): a pinned stream held through 200k puts kept 2.2 GB
        // of pages in memory when every older snapshot held them all.
        // The freed runs' scan below has a budget of its own: behind a
        // long-lived snapshot, with point reads opening snapshots all the
        // time, what retirement left of a shared one let the scan fall
        // further behind the frees with every call.
        let mut scan_budget = budget;
        let mut budget = budget;
        // Pages held for a snapshot that has ended since: look again.
        let ready: Vec<Held> = self
            .held
            .extract_if(.., |h| open.binary_search(&h.waits_for).is_err())
            .collect();
        for h in ready {
            if budget == 0 {
                self.held.push(h);
                continue;
            }
            budget = budget.saturating_sub(h.ids.len());
            self.drop_unreachable(h.ids, h.until, h.newest, open, unwritten);
        }
        while let Some(front) = self.retired.front_mut() {
            if budget == 0 {
                break;
            }
            let (read_before, written) = (front.read_before, front.written);
            let take = front.ids.len().min(budget);
            let from = front.ids.len() - take;
            let ids: Vec<PageId> = front.ids.drain(from..).collect();
            if front.ids.is_empty() {
                self.retired.pop_front();
            }
            budget -= take;
            // Snapshots of commits from `read_before` on read these pages
            // from the file.
            self.drop_unreachable(ids, read_before, written, open, unwritten);
        }
        while let Some((txid, _)) = self.pending.front() {
            if seen(*txid) || *txid > self.synced_txid {
                break;
            }
            let (_, runs) = self.pending.pop_front().expect("front exists");
            self.pending_dropped = self.pending_dropped.saturating_sub(1);
            self.release(runs, unwritten);
        }
        while let Some((txid, _)) = self.pending_volatile.front() {
            if seen(*txid) {
                break;
            }
            let (_, runs) = self.pending_volatile.pop_front().expect("front exists");
            self.volatile_dropped = self.volatile_dropped.saturating_sub(1);
            self.release(runs, unwritten);
        }
        // Freed runs wait for every older snapshot before they are reused,
        // but their memory (pages freed before a write-out let go of them)
        // only for the snapshots that reach them. Each entry is looked at
        // once; what a snapshot reaches then is held for it.
        for volatile in [true, false] {
            loop {
                let (list, cursor) = if volatile {
                    (&self.pending_volatile, self.volatile_dropped)
                } else {
                    (&self.pending, self.pending_dropped)
                };
                let Some((freed_by, runs)) = list.get(cursor).filter(|_| scan_budget > 0) else {
                    break;
                };
                let freed_by = *freed_by;
                scan_budget = scan_budget.saturating_sub(runs.len());
                // Most freed pages are in the file only: a shared lookup
                // each, not the exclusive one a removal takes. Only the
                // writer adds entries, and it is the caller.
                let ids: Vec<PageId> = runs
                    .iter()
                    .map(|&(id, _)| id)
                    .filter(|&id| unwritten.get(id).is_some())
                    .collect();
                if volatile {
                    self.volatile_dropped += 1;
                } else {
                    self.pending_dropped += 1;
                }
                // Snapshots of commits from `freed_by` on do not reach
                // these pages; none of the ids is reused yet. Pages the
                // write-ahead in flight lists (a sync's first rounds list
                // most of what is in memory, and commits meanwhile
                // supersede much of it) are held and looked at again, not
                // left for the run's release.
                self.drop_unreachable(ids, freed_by, freed_by - 1, open, unwritten);
            }
        }
    }

    /// Drops from memory each page of `ids` that no open snapshot reads
    /// there (see [`Held`] for `until` and `newest`); a page some open
    /// snapshot may read is held for it in `self.held`, and one the
    /// write-ahead in flight lists is held to be looked at again at the
    /// next call (for snapshot 0, which no snapshot is). Called only at a
    /// write transaction's begin, under the writer lock: no write
    /// transaction is open.
    fn drop_unreachable(
        &mut self,
        ids: Vec<PageId>,
        until: u64,
        newest: u64,
        open: &[u64],
        unwritten: &UnwrittenPages,
    ) {
        // Kept pages grouped by the snapshot they wait for (few distinct;
        // 0 for those the write-ahead in flight lists).
        let mut kept: Vec<(u64, Vec<PageId>)> = Vec::new();
        let mut keep =
            |waits_for: u64, id: PageId| match kept.iter_mut().find(|(k, _)| *k == waits_for) {
                Some((_, group)) => group.push(id),
                None => kept.push((waits_for, vec![id])),
            };
        for id in ids {
            if self.writing_ahead.contains(&id) {
                keep(0, id);
                continue;
            }
            let mut waits_for = None;
            // SAFETY: no open snapshot reads this page from memory. Those
            // of commits from `until` on read it from the file or do not
            // reach it (see `Held`); those of commits before the page's own
            // cannot reach it, and no older page of theirs is at this id
            // (an id is reused only once every snapshot from before the
            // commit that freed it has ended); one of a commit in between
            // keeps it. A page newer than `newest` at the id is another
            // page and stays. The write-ahead in flight does not list the
            // id, so it reads nothing here, and no write transaction is
            // open.
            let old = unsafe {
                unwritten.remove_if(id, |b| {
                    let page = Header(b).txid();
                    if page > newest {
                        return false;
                    }
                    let first = open.partition_point(|&s| s < page);
                    waits_for = open.get(first).copied().filter(|&s| s < until);
                    waits_for.is_none()
                })
            };
            self.recycle(old.into_iter());
            if let Some(s) = waits_for {
                keep(s, id);
            }
        }
        for (waits_for, ids) in kept {
            self.held.push(Held {
                waits_for,
                until,
                newest,
                ids,
            });
        }
    }

    /// Makes freed runs reusable and drops what memory held of them.
    fn release(&mut self, runs: Vec<(PageId, u64)>, unwritten: &UnwrittenPages) {
        for (id, len) in runs {
            if self.writing_ahead.contains(&id) {
                // A write-ahead in flight still reads this run from memory
                // and writes it: reusing it now would let that write land
                // on the new contents, and dropping it would pull the bytes
                // from under the write.
                self.deferred.push((id, len));
                continue;
            }
            self.free.insert(id, len);
            self.pending_pages -= len;
            if unwritten.bytes() > 0 {
                // SAFETY: the run was freed by a commit that every open
                // snapshot is at or past: none of them reaches it, and no
                // write-ahead reads it (deferred above).
                let old = unsafe { unwritten.remove_if(id, |_| true) };
                self.recycle(old.into_iter());
            }
        }
    }

    /// Ends a write-ahead: runs freed while it wrote become reusable.
    pub fn end_write_ahead(&mut self, unwritten: &UnwrittenPages) {
        self.writing_ahead.clear();
        self.writing_ahead_bytes = 0;
        let runs = std::mem::take(&mut self.deferred);
        self.release(runs, unwritten);
    }

    pub fn recycle(&mut self, bufs: impl Iterator<Item = Box<[u8]>>) {
        for b in bufs {
            if b.len() == self.page_size && self.buffers.len() < BUFFER_POOL {
                self.buffers.push(b);
            }
        }
    }
}

pub(crate) struct Shared {
    pub file: DbFile,
    pub limits: Limits,
    pub read_only: bool,
    pub durability: Durability,
    pub verified: VerifiedPages,
    /// Pages of unsynced commits not written to the file yet.
    pub unwritten: UnwrittenPages,
    /// See [`Options::unwritten_limit`].
    pub unwritten_limit: usize,
    /// `Writer::writing_ahead_bytes`, readable without the writer lock
    /// (for pacing background work, which must not take it).
    pub writing_ahead_bytes: AtomicUsize,
    /// The fewest in-memory pages that make a sync write ahead.
    pub write_ahead_min: u64,
    /// Held for a whole sync's write-ahead rounds: one at a time; and for
    /// each truncation step of [`Db::trim_file`], which a sync's writes
    /// must not overlap. Taken before the writer lock.
    pub syncing: Mutex<()>,
    /// Whether a sync is in its last round: batched background work waits
    /// for that round to end (see `Db::pace_background`).
    pub sync_closing: sync::ClosingRound,
    /// Held while [`Db::trim_file`] truncates the file without the writer
    /// lock. The writer takes it before growing the file (always under the
    /// writer lock, so the order is writer lock, then this), which puts
    /// every growth after the truncation it would otherwise race.
    pub trimming: Mutex<()>,
    pub state: Mutex<State>,
    pub writer: Arc<Mutex<Writer>>,
    /// Who waits for `writer`: see `writer_lock`.
    pub waiting: writer_lock::Waiting,
    /// A batched store's open write transaction, between its writes.
    pub parked: parked::Parked,
    serial: AtomicU64,
    pub recovery: Option<Recovery>,
}

/// What open found when it could not use the newest meta page as it was:
/// a damaged meta slot, or a newer commit whose pages did not all reach the
/// disk (power loss during its sync). See [`Db::recovery`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// The commit the database opened at.
    pub txid: u64,
    /// Why each other meta page was not used.
    pub rejected: Vec<String>,
}

impl Shared {
    pub fn next_serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed)
    }

    pub fn publish_space(&self, w: &Writer) {
        let mut state = self.state.lock();
        let oldest = state.readers.oldest();
        let s = &mut state.space;
        s.file_len = w.file_len;
        s.hwm = w.meta.hwm;
        s.unreferenced = w.unreferenced.pages();
        s.synced_txid = w.synced_txid;
        // Commits at or before every open snapshot pin nothing.
        match oldest {
            None => s.pending.clear(),
            Some(o) => {
                while s.pending.front().is_some_and(|&(t, _)| t <= o) {
                    s.pending.pop_front();
                }
            }
        }
    }
}

/// Space and activity figures of a database; see [`Db::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes per page.
    pub page_size: u32,
    /// Size of the file in bytes (it grows ahead of use, in steps).
    pub file_size: u64,
    /// Pages allocated in the file (the high-water mark).
    pub allocated_pages: u64,
    /// Bytes of pages the last commit references (meta pages included).
    pub bytes_in_use: u64,
    /// Pages the last commit does not reference and no open snapshot can
    /// see: reusable by the next write (once the commits that freed them are
    /// durable).
    pub free_pages: u64,
    /// Pages freed by commits but kept because an open snapshot may still
    /// read them.
    pub pinned_pages: u64,
    /// The id of the last commit.
    pub txid: u64,
    /// The id of the last commit on stable storage: a crash loses the
    /// commits after it (made with [`Durability::None`]), never this one.
    pub synced_txid: u64,
    /// Read transactions open now.
    pub open_readers: usize,
    /// How long the longest-open read transaction has been open.
    pub longest_reader: Option<Duration>,
}

/// A database handle: cheap to clone, `Send + Sync`, one per file per
/// process for writing.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use revkv::{Db, TxnRead};
/// use std::ops::Bound;
/// let db = Db::open(dir.path().join("db"))?;
/// let mut w = db.begin_write()?;
/// let t = w.open_table("t")?;
/// for k in [b"a", b"b", b"c"] {
///     w.insert(t, k, b"x")?;
/// }
/// w.commit()?;
/// let r = db.begin_read()?;
/// let t = r.open_table("t")?;
/// let keys: Vec<&[u8]> = r
///     .range(t, Bound::Included(&b"b"[..]), Bound::Unbounded)?
///     .map(|e| e.map(|(k, _)| k))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(keys, [&b"b"[..], b"c"]);
/// # Ok::<(), revkv::Error>(())
/// ```
#[derive(Clone)]
pub struct Db {
    pub(crate) shared: Arc<Shared>,
}

impl Db {
    /// Opens or creates the database at `path` with default [`Options`].
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Options::new().open(path)
    }

    /// Begins a read transaction on the last commit. Never waits for the
    /// writer.
    pub fn begin_read(&self) -> Result<ReadTxn> {
        Ok(ReadTxn::begin(&self.shared))
    }

    /// Begins the write transaction, waiting for the current one to end.
    pub fn begin_write(&self) -> Result<WriteTxn> {
        WriteTxn::begin(&self.shared)
    }

    /// Like [`Db::begin_write`], but first lets any writer already waiting
    /// go ahead (see `WriteTxn::begin_yielding`).
    pub(crate) fn begin_write_yielding(&self) -> Result<WriteTxn> {
        WriteTxn::begin_yielding(&self.shared)
    }

    /// Space and activity figures. Never waits for the writer.
    pub fn stats(&self) -> Stats {
        let state = self.shared.state.lock();
        let ps = self.shared.limits.page_size as u64;
        let s = &state.space;
        let pinned: u64 = match state.readers.oldest() {
            Some(oldest) => s
                .pending
                .iter()
                .filter(|(t, _)| *t > oldest)
                .map(|(_, n)| n)
                .sum(),
            None => 0,
        };
        Stats {
            page_size: ps as u32,
            file_size: s.file_len,
            allocated_pages: s.hwm,
            bytes_in_use: (s.hwm - s.unreferenced) * ps,
            free_pages: s.unreferenced - pinned,
            pinned_pages: pinned,
            txid: state.snapshot.txid,
            synced_txid: s.synced_txid,
            open_readers: state.readers.open(),
            longest_reader: state.readers.longest_open(),
        }
    }

    /// Bytes of the pages allocated as of the last commit (the high-water
    /// mark): `Stats::allocated_pages` times the page size, without the
    /// rest of [`Db::stats`].
    pub(crate) fn allocated_bytes(&self) -> u64 {
        let hwm = self.shared.state.lock().space.hwm;
        hwm * self.shared.limits.page_size as u64
    }

    /// Verifies the whole file as of the last commit: every reachable page's
    /// checksum and layout, key order across pages, balanced depth, entry
    /// counts, and that every page is either reachable or free exactly once.
    pub fn check(&self) -> Result<CheckReport> {
        // The free list on disk describes the last durable commit.
        self.sync()?;
        check::check(&self.begin_read()?)
    }

    /// Whether open had to pass over a damaged meta page or an incomplete
    /// newer commit, and why. `None` after a clean open. After power loss
    /// during a commit this names the commit that was rolled back; on a file
    /// with no crash in its past it means the newest meta page rotted, and
    /// the database opened at the commit before it.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.shared.recovery.as_ref()
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        self.shared.file.path()
    }

    /// The largest key the storage layer accepts (a quarter page, less
    /// overhead: 976 bytes at 4 KiB pages).
    pub fn max_key_len(&self) -> usize {
        self.shared.limits.max_key
    }

    /// Truncates the file to the length the last shrink left it (see
    /// `WriteTxn::shrink`), at most [`TRIM_STEP`] bytes per step. Each step
    /// takes the writer lock only to decide and publish the new end; the
    /// truncation itself (tens to hundreds of milliseconds on ext4 for a
    /// step) runs without it, so writers and readers go on meanwhile. This
    /// is safe because nothing touches the bytes being cut: they hold only
    /// free pages, which no snapshot reaches and no write-ahead in flight
    /// lists; every later writer sees the shorter length, so it writes
    /// past it only after growing the file, and growing waits for the
    /// truncation (`Shared::trimming`). Never cuts below the pages in use
    /// when the step runs. Returns the longest hold of the writer lock.
    pub(crate) fn trim_file(&self) -> Duration {
        let ps = self.shared.limits.page_size as u64;
        let mut longest = Duration::ZERO;
        loop {
            // No step while a sync writes (and none starts during a step):
            // on ext4 a truncation and a buffered write take the same inode
            // lock, and a truncation step (10-20 ms for 32 MiB) retaken
            // right after the last one starved the sync's writes, one page
            // per call, for the whole trim: a writer waiting for that sync
            // waited 0.26-0.55 s at 1M keys. A sync now waits for one step
            // at most, then writes undisturbed.
            let no_sync = self.shared.syncing.lock();
            let mut w = self.shared.lock_writer();
            let start = std::time::Instant::now();
            let Some(target) = w.trim_to else {
                return longest;
            };
            // Commits since the shrink may have allocated past the target.
            let floor = target.max(w.meta.hwm * ps);
            if w.file_len <= floor {
                w.trim_to = None;
                return longest;
            }
            let len = floor.max(w.file_len.saturating_sub(TRIM_STEP) / ps * ps);
            let trimming = self.shared.trimming.lock();
            w.file_len = len;
            // Readers that start now bound their page reads by the new end.
            self.shared.state.lock().snapshot.file_pages = len / ps;
            self.shared.publish_space(&w);
            drop(w);
            longest = longest.max(start.elapsed());
            let cut = self.shared.file.set_len(len);
            drop(trimming);
            drop(no_sync);
            if let Err(e) = cut {
                // The file keeps some bytes past the length the writer
                // believes: free pages nobody reads, and the next growth
                // sets the length whatever it is. Only the reported file
                // size is short until then.
                write::log_ignored("truncating the file after a shrink", &e);
                self.shared.lock_writer().trim_to = None;
                return longest;
            }
        }
    }
}

/// Bytes [`Db::trim_file`] truncates per step.
pub(crate) const TRIM_STEP: u64 = 32 << 20;

impl Drop for Db {
    fn drop(&mut self) {
        // The last handle (no transaction holds the shared state either):
        // make unsynced commits durable and record the last commit as
        // synced, so the next open has nothing to verify. An error cannot be
        // reported from here; the file stays consistent regardless.
        if Arc::strong_count(&self.shared) == 1 && !self.shared.read_only {
            let _ = self.sync();
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path())
            .field("page_size", &self.shared.limits.page_size)
            .field("read_only", &self.shared.read_only)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    /// A copy of the file as it is now (what a crash would leave), next to
    /// it. Read and write, not `fs::copy`: Miri has no copy_file_range.
    pub(super) fn disk_copy(path: &std::path::Path) -> std::path::PathBuf {
        let copy = path.with_extension("copy");
        std::fs::write(&copy, std::fs::read(path).unwrap()).unwrap();
        copy
    }

    use super::*;

    fn put(db: &Db, durability: Durability, key: &[u8]) {
        let mut w = db.begin_write().unwrap();
        w.set_durability(durability);
        let t = w.open_table("t").unwrap();
        w.insert(t, key, b"v").unwrap();
        w.commit().unwrap();
    }

    /// A commit between the two halves of a sync (another thread's) keeps
    /// its pages in memory: the sync must not mark it synced on disk.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see the pages a sync writes after the commit that grew the file remapped it"
    )]
    fn a_sync_never_marks_a_commit_held_in_memory_as_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Options::new()
            .durability(Durability::None)
            .open(&path)
            .unwrap();
        put(&db, Durability::None, b"a");
        db.commit_durably().unwrap();
        put(&db, Durability::None, b"b");
        db.mark_synced().unwrap();
        // What the file holds now (what a crash would leave) must open to
        // a state that is all in it.
        let copy = disk_copy(&path);
        drop(db);
        let db = Options::new().read_only(true).open(&copy).unwrap();
        assert!(db.recovery().is_none(), "{:?}", db.recovery());
        db.check().unwrap();
        let r = db.begin_read().unwrap();
        let t = r.open_table("t").unwrap();
        assert_eq!(r.get(t, b"a").unwrap(), Some(&b"v"[..]));
    }
}

//! How a store is opened: when its writes become durable, etcd's request
//! limits, the space quota and the size of a compaction's plans.

use std::time::Duration;

use super::compact;
use crate::quota::DEFAULT_QUOTA_BYTES;

/// When writes become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Every write is durable when it returns. Concurrent writers share
    /// commits and fsyncs (group commit).
    Immediate,
    /// Like etcd's backend batching: writes are visible to every reader as
    /// soon as they return, and synced every `max_writes` writes or
    /// `max_delay`, whichever comes first. A crash (of the process, the
    /// machine or its power) loses at most the writes since the last sync
    /// and never corrupts the store. Syncs run on a background thread, which
    /// starts one early, at half of `max_writes`. A writer that fills
    /// `max_writes` before that sync ends waits for it (writers stay at most
    /// one sync ahead of the disk) and leaves the next sync to the thread.
    ///
    /// Consecutive writes share one storage transaction, kept open
    /// ("parked") between them, as etcd's backend keeps its bbolt
    /// transaction: a page many of them touch is copied once, not once per
    /// write. Point reads (a range of one key) read through it; any other
    /// read, a sync, compaction, defragmentation or a storage-level
    /// [`Db::begin_write`](crate::Db::begin_write) commits it first (at
    /// most 4096 pages of work, a few milliseconds), and so does the writer
    /// itself whenever anyone else waits for the writer lock or the
    /// transaction holds 4096 pages. Storage-level readers
    /// ([`Db::begin_read`](crate::Db::begin_read)) see parked writes once
    /// they are committed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use revkv::mvcc::{CommitMode, Store, StoreOptions};
    /// use std::time::Duration;
    /// let batched = CommitMode::Batched { max_writes: 10_000, max_delay: Duration::from_millis(100) };
    /// let store = Store::open(dir.path().join("kv.db"), StoreOptions::new().commit_mode(batched))?;
    /// store.put(b"k", b"v")?;
    /// store.sync()?; // durable now, not at the next batch
    /// # Ok::<(), revkv::Error>(())
    /// ```
    Batched {
        /// Sync after this many writes.
        max_writes: u32,
        /// Sync at least this often while writes are unsynced.
        max_delay: Duration,
    },
}

/// How to open a [`Store`](super::Store); a builder.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub(super) page_size: Option<u32>,
    pub(super) commit: CommitMode,
    pub(super) max_value_bytes: usize,
    pub(super) max_request_bytes: usize,
    pub(super) max_txn_ops: usize,
    pub(super) read_only: bool,
    pub(super) quota: Option<u64>,
    pub(super) compaction_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions::new()
    }
}

impl StoreOptions {
    /// etcd's defaults: values up to 1 MiB, requests up to 1.5 MiB, 128
    /// operations per transaction; every write durable on return.
    pub fn new() -> StoreOptions {
        StoreOptions {
            page_size: None,
            commit: CommitMode::Immediate,
            max_value_bytes: 1 << 20,
            max_request_bytes: 3 << 19,
            max_txn_ops: 128,
            read_only: false,
            quota: Some(DEFAULT_QUOTA_BYTES),
            compaction_batch: compact::BATCH,
        }
    }

    /// Page size of a new file (see
    /// [`Options::page_size`](crate::Options::page_size)).
    pub fn page_size(mut self, bytes: u32) -> StoreOptions {
        self.page_size = Some(bytes);
        self
    }

    /// When writes become durable.
    pub fn commit_mode(mut self, mode: CommitMode) -> StoreOptions {
        self.commit = mode;
        self
    }

    /// Largest value of one key.
    pub fn max_value_bytes(mut self, bytes: usize) -> StoreOptions {
        self.max_value_bytes = bytes;
        self
    }

    /// Largest request: the bytes of its keys, values, range ends and
    /// compare operands, plus 8 per operation and 16 per compare (etcd
    /// measures the encoded protobuf; this is close to it).
    pub fn max_request_bytes(mut self, bytes: usize) -> StoreOptions {
        self.max_request_bytes = bytes;
        self
    }

    /// Most operations in one branch of a transaction.
    pub fn max_txn_ops(mut self, ops: usize) -> StoreOptions {
        self.max_txn_ops = ops;
        self
    }

    /// The space quota (etcd's `--quota-backend-bytes`; default 2 GiB): a
    /// write that would take the database past it raises the NOSPACE alarm
    /// and fails with [`Error::NoSpace`](crate::Error::NoSpace); see
    /// [`crate::quota`].
    pub fn quota_bytes(mut self, bytes: u64) -> StoreOptions {
        self.quota = Some(bytes);
        self
    }

    /// No space quota: the database grows until the disk is full (a full
    /// disk fails the write cleanly; nothing committed is lost).
    pub fn no_quota(mut self) -> StoreOptions {
        self.quota = None;
        self
    }

    /// Revision-log entries one compaction plan covers (default 65,536).
    /// A plan is made on a snapshot, without the writer, and orders its
    /// removals by key, so the larger it is the more removals share a
    /// page. It costs about 150 bytes of memory per entry while it is made
    /// and half that while it is applied (10 and 5 MB at the default with
    /// keys of 35 bytes), and a crash replays at most one plan. It does
    /// not bound how long compaction holds the writer: a plan is applied
    /// in slices that end when a writer waits (with
    /// [`CommitMode::Immediate`] after at least 200 us, each slice its own
    /// write transaction) or when the transaction holds 1024 pages (4096
    /// in batched mode, where the slice's pages are the parked
    /// transaction's).
    pub fn compaction_batch(mut self, entries: usize) -> StoreOptions {
        self.compaction_batch = entries.max(1);
        self
    }

    /// Open without writing (a shared lock; no compaction is resumed).
    pub fn read_only(mut self, read_only: bool) -> StoreOptions {
        self.read_only = read_only;
        self
    }
}

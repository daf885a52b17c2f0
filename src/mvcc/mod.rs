//! The revision store: etcd's v3 KV semantics on a persistent revision
//! index.
//!
//! Every write transaction that changes something creates a new revision;
//! any revision not yet compacted can be read. The index lives in the same
//! copy-on-write file as the data (see [`keys`] for the layout), so opening a
//! store reads a few meta keys and nothing else, and memory does not grow
//! with the number of keys or revisions.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use revkv::mvcc::{RangeOptions, Store, StoreOptions};
//! let store = Store::open(dir.path().join("kv.db"), StoreOptions::new())?;
//! assert_eq!(store.current_revision()?, 1);
//! let put = store.put(b"/registry/pods/default/web-1", b"v1")?;
//! assert_eq!(put.header.revision, 2);
//! store.put(b"/registry/pods/default/web-1", b"v2")?;
//! let got = store.range(b"/registry/pods/", &revkv::mvcc::prefix_end(b"/registry/pods/"), &RangeOptions::default())?;
//! assert_eq!((got.count, got.kvs[0].version, got.kvs[0].value.as_slice()), (1, 2, &b"v2"[..]));
//! // The first version is still there at revision 2.
//! let old = store.range(b"/registry/pods/default/web-1", b"", &RangeOptions { revision: 2, ..Default::default() })?;
//! assert_eq!(old.kvs[0].value, b"v1");
//! # Ok::<(), revkv::Error>(())
//! ```

pub(crate) mod changes;
mod commit;
mod compact;
pub mod keys;
mod options;
pub(crate) mod read;
mod record;
mod salvage;
mod space;
mod syncer;
mod txn;
mod write;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::quota::{self, Alarm};
use crate::txn::parked::PARK_MAX_PAGES;
use crate::txn::{Durability, TxnRead, WriteTxn};
use crate::{Db, Options, ReadTxn, Table};

pub use changes::{Event, EventKind};
pub use keys::prefix_end;
pub use options::{CommitMode, StoreOptions};
pub use read::RangeEnd;
pub use record::KeyValue;
pub use salvage::StoreSalvageReport;
pub use space::Status;
use syncer::{SyncRounds, Syncer};
pub use txn::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeOptions, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp,
    TxnRequest, TxnResponse,
};

const KV: &str = "kv";
const REV: &str = "rev";
const META: &str = "meta";
const META_CURRENT: &[u8] = b"current_revision";
const META_COMPACTED: &[u8] = b"compacted_revision";
const META_SCHEDULED: &[u8] = b"scheduled_compact_revision";
const META_PROGRESS: &[u8] = b"compact_progress";

/// Handles of the store's tables, valid inside one storage transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tables {
    pub kv: Table,
    pub rev: Table,
    pub meta: Table,
}

/// The current and compacted revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Revisions {
    pub current: u64,
    pub compacted: u64,
}

struct Inner {
    db: Db,
    opts: StoreOptions,
    /// The committed revisions; held by whoever writes them.
    revs: Mutex<Revisions>,
    /// `revs.current`, for point reads that do not wait for a writer.
    current: AtomicU64,
    /// Held by the one caller running the physical compaction.
    compacting: Mutex<()>,
    committer: commit::Committer,
    unsynced: Arc<Mutex<u32>>,
    /// The tables and revisions of the last snapshot read, by txid: reads
    /// of the same commit skip the catalog and meta lookups.
    snapshot_cache: Mutex<Option<(u64, Tables, Revisions)>>,
    streams: crate::stream::StreamMetrics,
    /// The change feed watchers read.
    pub(crate) feed: changes::Feed,
    /// The raised alarms with their details (what the `alarm` table holds).
    alarms: Mutex<Vec<(Alarm, u64)>>,
    /// The background syncer of batched mode, stopped and joined on drop.
    syncer: Mutex<Option<Syncer>>,
    rounds: Arc<SyncRounds>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The parked transaction holds a database handle and the writer
        // lock: commit it, so the last handle below syncs everything. A
        // failure cannot be reported from here; it poisons the handle.
        let _ = self.db.flush_parked();
        if let Some(Syncer { wake, thread }) = self.syncer.get_mut().take() {
            drop(wake);
            // The thread only syncs: it cannot panic in a way worth
            // propagating from a destructor.
            let _ = thread.join();
        }
    }
}

/// A revision store. Cheap to clone, `Send + Sync`. With
/// [`CommitMode::Immediate`] reads never wait for writes. With
/// [`CommitMode::Batched`] a point read of a key with a write parked since
/// the last commit waits at most for the write or the slice of compaction
/// or defragmentation being applied (microseconds); a point read of any
/// other key reads the last commit and never waits; any other read waits
/// for the commit of the parked writes (at most 4096 pages of work, a few
/// milliseconds): the
/// price of seeing every acknowledged write without a commit per write.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// The answer to [`Store::hash_kv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKvResponse {
    /// The store's revision.
    pub header: ResponseHeader,
    /// The hash of every version stored at or below the revision asked for.
    pub hash: u32,
    /// The compacted revision when the hash was taken.
    pub compact_revision: i64,
}

fn read_u64(txn: &impl TxnRead, meta: Table, key: &[u8]) -> Result<Option<u64>> {
    match txn.get(meta, key)? {
        None => Ok(None),
        Some(b) => Ok(Some(u64::from_be_bytes(b.try_into().map_err(|_| {
            Error::CorruptFile(format!(
                "meta key {:?} is malformed",
                String::from_utf8_lossy(key)
            ))
        })?))),
    }
}

fn tables(w: &mut WriteTxn) -> Result<Tables> {
    Ok(Tables {
        kv: w.open_table(KV)?,
        rev: w.open_table(REV)?,
        meta: w.open_table(META)?,
    })
}

fn read_tables(r: &ReadTxn) -> Result<Tables> {
    Ok(Tables {
        kv: r.open_table(KV)?,
        rev: r.open_table(REV)?,
        meta: r.open_table(META)?,
    })
}

fn read_revisions(txn: &impl TxnRead, meta: Table) -> Result<Revisions> {
    Ok(Revisions {
        current: read_u64(txn, meta, META_CURRENT)?.unwrap_or(1),
        compacted: read_u64(txn, meta, META_COMPACTED)?.unwrap_or(0),
    })
}

impl Store {
    /// Opens or creates the store at `path`; finishes a compaction that a
    /// crash interrupted.
    pub fn open(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let mut o = Options::new().read_only(opts.read_only);
        if let Some(ps) = opts.page_size {
            o = o.page_size(ps);
        }
        if let CommitMode::Batched { .. } = opts.commit {
            o = o.durability(Durability::None);
        }
        let db = o.open(path)?;
        Store::with_db(db, opts)
    }

    /// A store over an open database (its tables are `kv`, `rev` and
    /// `meta`; other tables may live beside them).
    pub fn with_db(db: Db, opts: StoreOptions) -> Result<Store> {
        let revs = if opts.read_only {
            let r = db.begin_read()?;
            match read_tables(&r) {
                Ok(t) => read_revisions(&r, t.meta)?,
                Err(e) if e.kind() == crate::ErrorKind::TableNotFound => Revisions {
                    current: 1,
                    compacted: 0,
                },
                Err(e) => return Err(e),
            }
        } else {
            let mut w = db.begin_write()?;
            w.set_durability(Durability::Immediate);
            let t = tables(&mut w)?;
            let revs = read_revisions(&w, t.meta)?;
            if w.get(t.meta, META_CURRENT)?.is_none() {
                w.insert(t.meta, META_CURRENT, &1u64.to_be_bytes())?;
            }
            w.commit()?;
            revs
        };
        let alarms = quota::load(&db.begin_read()?)?;
        let syncer = match opts.commit {
            CommitMode::Batched { max_delay, .. } if !opts.read_only => Some(max_delay),
            _ => None,
        };
        let store = Store {
            inner: Arc::new(Inner {
                db,
                opts,
                revs: Mutex::new(revs),
                current: AtomicU64::new(revs.current),
                compacting: Mutex::new(()),
                committer: commit::Committer::default(),
                unsynced: Arc::new(Mutex::new(0)),
                snapshot_cache: Mutex::new(None),
                streams: crate::stream::StreamMetrics::default(),
                alarms: Mutex::new(alarms),
                feed: changes::Feed::new(revs.current),
                syncer: Mutex::new(None),
                rounds: Arc::default(),
            }),
        };
        if let Some(delay) = syncer {
            let syncer = Syncer::start(&store.inner, delay)?;
            *store.inner.syncer.lock() = Some(syncer);
        }
        if !store.inner.opts.read_only {
            store.finish_compaction()?;
        }
        Ok(store)
    }

    /// The database underneath (stats, defragmentation, check).
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    fn limits(&self) -> txn::Limits {
        txn::Limits {
            max_value: self.inner.opts.max_value_bytes,
            max_request: self.inner.opts.max_request_bytes,
            max_ops: self.inner.opts.max_txn_ops,
            max_key: self.inner.db.max_key_len(),
        }
    }

    /// A snapshot with the store's tables and revisions as of it.
    fn snapshot(&self) -> Result<(ReadTxn, Option<Tables>, Revisions)> {
        // Writes parked in batched mode are acknowledged: commit them so
        // the snapshot has them.
        self.inner.db.flush_parked()?;
        self.last_commit()
    }

    /// A snapshot of the last commit, which lacks any writes parked in
    /// batched mode.
    fn last_commit(&self) -> Result<(ReadTxn, Option<Tables>, Revisions)> {
        let r = self.inner.db.begin_read()?;
        if let Some((txid, t, revs)) = *self.inner.snapshot_cache.lock() {
            if txid == r.txid() {
                let t = Tables {
                    kv: r.adopt(t.kv),
                    rev: r.adopt(t.rev),
                    meta: r.adopt(t.meta),
                };
                return Ok((r, Some(t), revs));
            }
        }
        match read_tables(&r) {
            Ok(t) => {
                let revs = read_revisions(&r, t.meta)?;
                *self.inner.snapshot_cache.lock() = Some((r.txid(), t, revs));
                Ok((r, Some(t), revs))
            }
            Err(e) if e.kind() == crate::ErrorKind::TableNotFound => Ok((
                r,
                None,
                Revisions {
                    current: 1,
                    compacted: 0,
                },
            )),
            Err(e) => Err(e),
        }
    }

    /// A snapshot for a stream (crate-internal).
    pub(crate) fn snapshot_for_stream(&self) -> Result<(ReadTxn, Option<Tables>, Revisions)> {
        self.snapshot()
    }

    /// The change feed (for watchers).
    pub(crate) fn feed(&self) -> &changes::Feed {
        &self.inner.feed
    }

    /// Whether both handles are of the same open store.
    pub(crate) fn same_store(&self, other: &Store) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Counters of this store's range streams.
    pub fn stream_metrics(&self) -> &crate::stream::StreamMetrics {
        &self.inner.streams
    }

    /// The revision of the last write.
    pub fn current_revision(&self) -> Result<i64> {
        Ok(self.inner.current.load(Ordering::Acquire) as i64)
    }

    /// Runs `read` on the transaction parked in batched mode, if one is,
    /// with the store's tables: a point read sees every acknowledged write
    /// there without waiting for a commit. None if nothing is parked.
    fn parked<R>(&self, read: impl FnOnce(&WriteTxn, Tables) -> Result<R>) -> Option<Result<R>> {
        self.inner
            .db
            .read_parked(|w| {
                let t = Tables {
                    kv: w.opened_table(KV)?,
                    rev: w.opened_table(REV)?,
                    meta: w.opened_table(META)?,
                };
                Some(read(w, t))
            })
            .flatten()
    }

    /// The revision below which history was compacted away (0 if never).
    pub fn compacted_revision(&self) -> Result<i64> {
        Ok(self.snapshot()?.2.compacted as i64)
    }

    /// Reads `[key, range_end)` (etcd's `range_end` rules) with `options`.
    /// Builds the whole answer in memory, as etcd's unary Range does: for
    /// large ranges use a stream, whose memory is one chunk.
    pub fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        options: &RangeOptions,
    ) -> Result<RangeResponse> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let (r, t, revs) = if range_end.is_empty() {
            // One key. The current revision first: it covers every write
            // acknowledged before this read began.
            let current = self.inner.current.load(Ordering::Acquire);
            if self.inner.db.parked_may_hold(key) {
                // Quick enough to read under the parked transaction's lock
                // (longer reads would hold up the writer).
                let parked = self.parked(|w, t| {
                    let revs = read_revisions(w, t.meta)?;
                    let at = revs.check_read(options.revision, revs.current)?;
                    read::range_at(w, t.kv, key, range_end, options, at, revs.current)
                });
                if let Some(resp) = parked {
                    return resp;
                }
            }
            // No write to this key is parked: the last commit has its
            // every acknowledged version, whatever waits in the parked
            // transaction for other keys (or background work there).
            let (r, t, mut revs) = self.last_commit()?;
            revs.current = revs.current.max(current);
            (r, t, revs)
        } else {
            self.snapshot()?
        };
        let at = revs.check_read(options.revision, revs.current)?;
        let Some(t) = t else {
            return Ok(RangeResponse {
                header: ResponseHeader {
                    revision: revs.current as i64,
                },
                ..Default::default()
            });
        };
        read::range_at(&r, t.kv, key, range_end, options, at, revs.current)
    }

    /// Puts `value` at `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<PutResponse> {
        self.put_with(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease: 0,
            prev_kv: false,
        })
    }

    /// A put with every option of etcd's `PutRequest`.
    pub fn put_with(&self, req: PutRequest) -> Result<PutResponse> {
        let resp = self.txn(TxnRequest {
            compare: vec![],
            success: vec![RequestOp::Put(req)],
            failure: vec![],
        })?;
        match resp.responses.into_iter().next() {
            Some(ResponseOp::Put(p)) => Ok(p),
            _ => unreachable!("a put request answers with a put response"),
        }
    }

    /// Deletes `[key, range_end)` (etcd's `range_end` rules); with
    /// `prev_kv`, returns the deleted key-values.
    pub fn delete_range(
        &self,
        key: &[u8],
        range_end: &[u8],
        prev_kv: bool,
    ) -> Result<DeleteRangeResponse> {
        let req = DeleteRangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            prev_kv,
        };
        let resp = self.txn(TxnRequest {
            compare: vec![],
            success: vec![RequestOp::DeleteRange(req)],
            failure: vec![],
        })?;
        match resp.responses.into_iter().next() {
            Some(ResponseOp::DeleteRange(d)) => Ok(d),
            _ => unreachable!("a delete request answers with a delete response"),
        }
    }

    /// Runs a transaction: compares, then the success or failure operations,
    /// all at one revision. A transaction with no writes runs on a snapshot.
    pub fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        txn::validate(&req, &self.limits())?;
        if req.is_read_only() {
            return self.read_txn(&req);
        }
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        self.check_space(space::cost(&req))?;
        self.inner
            .committer
            .submit(req, |jobs| self.apply_batch(jobs))
    }

    /// Applies many requests in one storage commit, each as its own
    /// revision, in order: what etcd's backend does when it batches writes,
    /// for bulk loads and imports. Each request is validated on its own; a
    /// request that fails validation gets its error and the others go on.
    /// Readers see all of them when this returns, none before.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use revkv::mvcc::{PutRequest, RequestOp, Store, StoreOptions, TxnRequest};
    /// let store = Store::open(dir.path().join("kv.db"), StoreOptions::new())?;
    /// let puts = (0..3).map(|i| TxnRequest {
    ///     success: vec![RequestOp::Put(PutRequest { key: format!("k{i}").into(), value: b"v".to_vec(), ..Default::default() })],
    ///     ..Default::default()
    /// });
    /// let results = store.write_batch(puts)?;
    /// assert_eq!(results.len(), 3);
    /// assert_eq!(store.current_revision()?, 4);
    /// # Ok::<(), revkv::Error>(())
    /// ```
    pub fn write_batch(
        &self,
        requests: impl IntoIterator<Item = TxnRequest>,
    ) -> Result<Vec<Result<TxnResponse>>> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let limits = self.limits();
        // The requests themselves: this caller waits for all of them, so
        // none needs a group-commit slot of its own.
        let mut valid = Vec::new();
        let mut early: Vec<Option<Error>> = Vec::new();
        for req in requests {
            match txn::validate(&req, &limits) {
                Ok(()) => {
                    valid.push(req);
                    early.push(None);
                }
                Err(e) => early.push(Some(e)),
            }
        }
        self.check_space(valid.iter().map(space::cost).sum())?;
        let mut results = self.try_apply_batch(valid.iter())?.into_iter();
        Ok(early
            .into_iter()
            .map(|e| match e {
                Some(e) => Err(e),
                None => results.next().expect("one result per applied job"),
            })
            .collect())
    }

    fn read_txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        let (r, t, revs) = self.snapshot()?;
        let header = ResponseHeader {
            revision: revs.current as i64,
        };
        let Some(t) = t else {
            let succeeded = req.compare.iter().all(|c| c.holds(None));
            let ops = if succeeded {
                &req.success
            } else {
                &req.failure
            };
            let responses = ops
                .iter()
                .map(|_| {
                    ResponseOp::Range(RangeResponse {
                        header,
                        ..Default::default()
                    })
                })
                .collect();
            return Ok(TxnResponse {
                header,
                succeeded,
                responses,
            });
        };
        let succeeded = write::compares_hold(&r, t.kv, req, revs.current)?;
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let RequestOp::Range(range) = op else {
                unreachable!("read-only transaction")
            };
            let at = revs.check_read(range.options.revision, revs.current)?;
            responses.push(ResponseOp::Range(read::range_at(
                &r,
                t.kv,
                &range.key,
                &range.range_end,
                &range.options,
                at,
                revs.current,
            )?));
        }
        Ok(TxnResponse {
            header,
            succeeded,
            responses,
        })
    }

    /// Applies queued requests in one storage transaction (the group-commit
    /// leader runs this).
    fn apply_batch(&self, jobs: Vec<commit::Job>) {
        match self.try_apply_batch(jobs.iter().map(|(req, _)| req)) {
            Ok(results) => {
                for ((_, slot), r) in jobs.iter().zip(results) {
                    slot.fill(r);
                }
            }
            Err(e) => {
                for (_, slot) in &jobs {
                    slot.fill(Err(e.duplicate()));
                }
            }
        }
    }

    fn try_apply_batch<'r>(
        &self,
        requests: impl ExactSizeIterator<Item = &'r TxnRequest>,
    ) -> Result<Vec<Result<TxnResponse>>> {
        if let CommitMode::Batched { .. } = self.inner.opts.commit {
            return self.apply_parked(requests);
        }
        let mut revs = self.inner.revs.lock();
        let mut w = self.inner.db.begin_write()?;
        let mut applier = self.applier(&mut w, *revs)?;
        let t = applier.t;
        let count = requests.len();
        let mut results = Vec::with_capacity(count);
        for req in requests {
            // A request's own error fails it alone when it came before any
            // write (the applier checks reads' revisions first); anything
            // else fails the batch, which is then not committed.
            match applier.apply(req) {
                Ok(r) => results.push(Ok(r)),
                Err(e) if !applier.wrote() && !is_storage_failure(&e) => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        let new = applier.revs;
        let events = applier.events.take().unwrap_or_default();
        if new.current != revs.current {
            w.insert(t.meta, META_CURRENT, &new.current.to_be_bytes())?;
        }
        let wrote = new.current != revs.current;
        w.commit()?;
        if wrote {
            // Under the revision lock, so the feed sees commits in order.
            self.inner.feed.committed(revs.current, new.current, events);
        }
        *revs = new;
        self.inner.current.store(new.current, Ordering::Release);
        drop(revs);
        if wrote {
            self.after_commit(count as u32)?;
        }
        Ok(results)
    }

    /// An applier over `w`, recording events while anyone watches.
    fn applier<'w>(&self, w: &'w mut WriteTxn, revs: Revisions) -> Result<write::Applier<'w>> {
        let t = tables(w)?;
        let mut applier = write::Applier::new(w, t, revs);
        if self.inner.feed.recording() {
            applier.events = Some(Vec::new());
        }
        Ok(applier)
    }

    /// Batched mode: applies requests to the parked transaction (see
    /// `txn::parked`) and leaves it open for the next writes, unless
    /// someone else waits for the writer. A request that fails part way is
    /// undone alone: the writes parked before it are acknowledged.
    fn apply_parked<'r>(
        &self,
        requests: impl ExactSizeIterator<Item = &'r TxnRequest>,
    ) -> Result<Vec<Result<TxnResponse>>> {
        let mut revs = self.inner.revs.lock();
        let mut resumed = self.inner.db.resume_parked()?;
        let (w, touched) = resumed.txn_and_touched();
        // An error here changed nothing: the transaction stays parked.
        let mut applier = self.applier(w, *revs)?;
        applier.touched = Some(touched);
        let t = applier.t;
        let count = requests.len();
        let mut results = Vec::with_capacity(count);
        for req in requests {
            match applier.apply(req) {
                Ok(r) => results.push(Ok(r)),
                Err(e) => match applier.undo() {
                    Ok(()) => results.push(Err(e)),
                    Err(undo) => {
                        drop(applier);
                        resumed.abandon(&undo);
                        return Err(e);
                    }
                },
            }
        }
        let new = applier.revs;
        let events = applier.events.take().unwrap_or_default();
        let wrote = new.current != revs.current;
        if wrote {
            let w = resumed.txn();
            if let Err(e) = w.insert(t.meta, META_CURRENT, &new.current.to_be_bytes()) {
                resumed.abandon(&e);
                return Err(e);
            }
            // Under the revision lock, so the feed sees writes in order.
            // A reader of the feed that then reads the store has the
            // parked writes committed first (`Store::snapshot`).
            self.inner.feed.committed(revs.current, new.current, events);
            *revs = new;
            self.inner.current.store(new.current, Ordering::Release);
        }
        drop(revs);
        resumed.park(self.may_park())?;
        if wrote {
            self.after_commit(count as u32)?;
        }
        Ok(results)
    }

    /// Whether writes may stay parked: not near the quota, which is checked
    /// against the committed size (a parked transaction's pages are not in
    /// it yet).
    fn may_park(&self) -> bool {
        let page = self.inner.db.shared.limits.page_size;
        let margin = (2 * PARK_MAX_PAGES * page) as u64;
        self.inner
            .opts
            .quota
            .is_none_or(|q| quota::Quota::size(&self.inner.db).saturating_add(margin) < q)
    }

    /// A hash of every version at or below `revision` (0: current) that
    /// compaction keeps, like etcd's HashKV: two stores with the same
    /// history and compacted revision agree, whether or not their
    /// compactions have finished removing what they compacted (versions at
    /// or below the compacted revision count only if compaction keeps them,
    /// as etcd skips revisions scheduled for removal).
    pub fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        let (r, t, revs) = self.snapshot()?;
        let at = revs.check_read(revision, revs.current)?;
        let hash = match t {
            Some(t) => compact::hash_kv(&r, t, at, revs.compacted)?,
            None => crc32fast::Hasher::new().finalize(),
        };
        Ok(HashKvResponse {
            header: ResponseHeader {
                revision: revs.current as i64,
            },
            hash,
            compact_revision: revs.compacted as i64,
        })
    }

    /// Checks the storage file and the store's own tables (every versioned
    /// key and record well formed). Returns the number of stored versions.
    pub fn check(&self) -> Result<u64> {
        self.inner.db.check()?;
        let (r, t, _) = self.snapshot()?;
        match t {
            Some(t) => compact::check_tables(&r, t),
            None => Ok(0),
        }
    }
}

fn is_storage_failure(e: &Error) -> bool {
    use crate::ErrorKind as K;
    matches!(e.kind(), K::Io | K::Corrupt | K::Poisoned | K::ReadOnly)
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("db", &self.inner.db).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A batched store whose syncs come only when asked for: `max_writes`
    /// and `max_delay` are never reached in a test.
    fn batched_store_that_syncs_when_asked(dir: &Path) -> Store {
        let mode = CommitMode::Batched {
            max_writes: 1_000_000,
            max_delay: Duration::from_secs(3600),
        };
        Store::open(dir.join("kv.db"), StoreOptions::new().commit_mode(mode)).unwrap()
    }

    /// Writes a writer hands to the syncer (as one that fills `max_writes`
    /// does) are synced by its next round, though nothing else asks for a
    /// sync: the count is not lost between the writer and the thread.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn writes_handed_to_the_syncer_are_synced_by_its_next_round() {
        let dir = tempfile::tempdir().unwrap();
        let store = batched_store_that_syncs_when_asked(dir.path());
        store.put(b"k", b"v").unwrap();
        let last = store.current_revision().unwrap();
        // What `after_commit` does at `max_writes`.
        let due = std::mem::take(&mut *store.inner.unsynced.lock());
        assert_eq!(due, 1);
        assert!(store.hand_to_syncer(due), "no round was in flight to fail");
        // The round runs on the syncer's thread: wait for it to end, up to
        // a deadline far beyond any sync's length.
        let deadline = Instant::now() + Duration::from_secs(60);
        let rounds = &store.inner.rounds;
        let mut s = rounds.state.lock();
        while s.ended < 1 {
            assert!(Instant::now() < deadline, "no round ended after 60 s");
            rounds.ended.wait_for(&mut s, Duration::from_millis(100));
        }
        assert_eq!(s.failed, 0);
        drop(s);
        let stats = store.db().stats();
        assert_eq!(stats.synced_txid, stats.txid, "revision {last} not synced");
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn a_point_read_of_a_key_without_parked_writes_does_not_wait_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = batched_store_that_syncs_when_asked(dir.path());
        store.put(b"committed", b"1").unwrap();
        store.sync().unwrap();
        store.put(b"parked", b"2").unwrap();
        assert!(store.inner.db.parked_may_hold(b"parked"));
        assert!(!store.inner.db.parked_may_hold(b"committed"));
        // This thread holds the parked transaction, as a slice of
        // compaction does: a read that waited for it would never return.
        let held = store.inner.db.resume_parked().unwrap();
        let got = store
            .range(b"committed", b"", &RangeOptions::default())
            .unwrap();
        assert_eq!(got.kvs[0].value, b"1");
        assert_eq!(got.header.revision, 3, "the parked write's revision");
        assert_eq!(store.current_revision().unwrap(), 3);
        drop(held);
        let got = store
            .range(b"parked", b"", &RangeOptions::default())
            .unwrap();
        assert_eq!(got.kvs[0].value, b"2");
        // Once committed nothing is marked.
        store.sync().unwrap();
        assert!(!store.inner.db.parked_may_hold(b"parked"));
    }

    /// The parked transaction stays open while its writes hold fewer than
    /// `PARK_MAX_PAGES` pages and is committed by the write that fills it:
    /// the limit bounds what a reader waits for, and nothing commits
    /// earlier (each commit makes later writes copy their paths again).
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn the_parked_transaction_is_committed_by_the_write_that_fills_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = batched_store_that_syncs_when_asked(dir.path());
        let value = [7u8; 1000];
        let parked_pages = || store.inner.db.read_parked(|t| t.dirty_pages());
        let txid = store.db().stats().txid;
        let mut held = 0;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0.. {
            // Keys in random order, so writes touch leaves all over.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            store
                .put(format!("/k/{x:016x}").as_bytes(), &value)
                .unwrap();
            match parked_pages() {
                Some(pages) => {
                    assert!(pages < PARK_MAX_PAGES, "{pages} pages parked at write {i}");
                    assert_eq!(store.db().stats().txid, txid, "committed at write {i}");
                    held = pages;
                }
                None => {
                    // One write adds a leaf and its path: a few pages.
                    assert!(
                        held + 16 >= PARK_MAX_PAGES,
                        "committed at write {i} holding only {held} pages"
                    );
                    assert!(store.db().stats().txid > txid);
                    break;
                }
            }
        }
        let got = store
            .range(b"/k/", b"/k0", &RangeOptions::default())
            .unwrap();
        assert!(got.kvs.len() > PARK_MAX_PAGES / 4, "{} keys", got.kvs.len());
    }
}

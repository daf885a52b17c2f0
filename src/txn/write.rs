//! The write transaction and its commit.
//!
//! One write transaction exists at a time (it holds the writer lock). It
//! copies pages before changing them, so readers keep seeing their snapshot,
//! and its commit writes the dirty pages, a new free list and a meta page.
//!
//! The commit itself (writing the pages, the free list and the meta, and
//! publishing the new state) is in [`commit`].

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::ops::Bound;
use std::sync::Arc;

use super::pages::MappedPages;
use super::relocate::Relocations;
use super::table::{
    check_table_name, CursorInner, Entries, EntriesInner, Table, TableCursor, TableRecord, TxnRead,
};
use super::writer_lock::WriterGuard;
use super::{Durability, Shared, Writer, RETIRE_PER_CALL, RETIRE_PER_PARKED};
use crate::btree::cursor::{Cursor, Range};
use crate::btree::node::{Limits, Node, NodeMut};
use crate::btree::relocate::relocate_leaf;
use crate::btree::write::{self as tree, PageStore};
use crate::btree::{self, PageSource, Root};
use crate::error::{Error, PageId, Result};
use crate::storage::extents::ExtentSet;
use crate::storage::page::{self, init_header, set_word, span_for, PageKind, PageRef, HEADER_LEN};
use crate::storage::unwritten::PageHasher;

mod commit;

pub(super) use commit::{PageRuns, VERIFY_BUDGET};

/// Largest value the storage layer accepts.
pub const MAX_VALUE_LEN: usize = (1 << 31) - 1;

type DirtyPages = HashMap<PageId, Box<[u8]>, BuildHasherDefault<PageHasher>>;

struct TableState {
    name: Box<str>,
    record: TableRecord,
    dirty: bool,
}

impl TableState {
    /// Counts one entry fewer after a removal. The count comes from the
    /// file: one already at zero while the tree held the entry is a
    /// corrupt table record, reported, not an overflow.
    fn count_removal(&mut self) -> Result<()> {
        self.record.len = self.record.len.checked_sub(1).ok_or_else(|| {
            Error::CorruptFile(format!(
                "table {:?} counts fewer entries than its tree holds",
                self.name
            ))
        })?;
        Ok(())
    }
}

/// The one write transaction of a database.
///
/// Changes are visible to this transaction at once and to others after
/// [`commit`](WriteTxn::commit) returns; dropping it without committing
/// discards them. Beginning a write transaction waits for the previous one
/// to end; readers are never blocked.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use revkv::{Db, TxnRead};
/// let db = Db::open(dir.path().join("db"))?;
/// let mut w = db.begin_write()?;
/// let t = w.open_table("t")?;
/// w.insert(t, b"k", b"v1")?;
/// assert_eq!(w.get(t, b"k")?, Some(&b"v1"[..]));
/// drop(w); // aborted
/// let r = db.begin_read()?;
/// assert!(r.open_table("t").is_err());
/// # Ok::<(), revkv::Error>(())
/// ```
pub struct WriteTxn {
    shared: Arc<Shared>,
    writer: WriterGuard<Writer>,
    pages: MappedPages,
    txid: u64,
    serial: u64,
    /// Pages 0..hwm are allocated once this transaction commits.
    hwm: u64,
    dirty: DirtyPages,
    /// Runs taken from the writer's free set (returned on abort).
    allocated: Vec<(PageId, u64)>,
    /// Committed runs this transaction no longer references.
    freed: Vec<(PageId, u64)>,
    /// Runs this transaction allocated and then freed again: reusable at once.
    txn_free: ExtentSet,
    catalog: Root,
    tables: Vec<TableState>,
    scratch: Vec<u8>,
    changed: bool,
    durability: Durability,
    /// Set by [`WriteTxn::shrink`]: truncate the file after the commit.
    shrunk: bool,
    /// Set once a transaction is parked: an unsynced commit keeps its pages
    /// in memory even past the unwritten limit (the next sync or commit
    /// writes them), so the commit cannot fail on a write and lose writes
    /// that were acknowledged while it was parked. (A transaction that was
    /// never parked holds nothing acknowledged: it may write out.)
    hold: bool,
    /// Set by [`WriteTxn::shrink`] when the last free-list run lies in the
    /// cut-off tail: it is dropped with it rather than freed.
    drop_old_freelist: bool,
}

/// Who begins a write transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Begin {
    /// A user, a sync, a store writer in immediate mode.
    Foreground,
    /// A batch of background work (see `txn::writer_lock`).
    Background,
    /// A store writer in batched mode, to park it (see `txn::parked`).
    Parked,
}

impl WriteTxn {
    pub(crate) fn begin(shared: &Arc<Shared>) -> Result<WriteTxn> {
        Self::begin_with(shared, Begin::Foreground, RETIRE_PER_CALL)
    }

    /// Begins a transaction to be parked (see `txn::parked`; the caller
    /// holds `Parked::beginning` and the slot is empty, so nothing parked
    /// holds the writer lock): one begin serves hundreds of writes, so it
    /// lets go of the memory of that many more retired pages.
    pub(crate) fn begin_parked(shared: &Arc<Shared>) -> Result<WriteTxn> {
        Self::begin_with(shared, Begin::Parked, RETIRE_PER_PARKED)
    }

    /// Makes an unsynced commit keep its pages in memory however many are
    /// held there (see the `hold` field): for a transaction being parked.
    pub(crate) fn hold_in_memory(&mut self) {
        self.hold = true;
    }

    /// The writer's state this transaction holds the lock of: for a sync's
    /// bookkeeping done through a parked transaction (see
    /// `Shared::with_writer`), which must leave the transaction's own
    /// changes alone.
    pub(crate) fn writer_state(&mut self) -> &mut Writer {
        &mut self.writer
    }

    /// Whether [`WriteTxn::hold_in_memory`] was called: it was parked.
    pub(crate) fn holds_in_memory(&self) -> bool {
        self.hold
    }

    /// Begins after handing the writer lock to any thread already waiting
    /// for it (fairly), then taking it back: for background work done in a
    /// series of batches (compaction, defragmentation), so a foreground
    /// write waits for at most the batch in progress instead of being
    /// overtaken by the next one.
    pub(crate) fn begin_yielding(shared: &Arc<Shared>) -> Result<WriteTxn> {
        Self::begin_with(shared, Begin::Background, RETIRE_PER_CALL)
    }

    fn begin_with(shared: &Arc<Shared>, how: Begin, retire: usize) -> Result<WriteTxn> {
        if shared.read_only {
            return Err(Error::ReadOnly);
        }
        // A parked transaction holds the writer lock (see `txn::parked`);
        // a failed flush poisons the writer, which is checked below. A
        // transaction to be parked does not count itself: nothing is
        // parked, and counting would make whoever parks next commit, then
        // begin again and make this one commit in turn.
        // A foreground writer takes the lock as it makes way if the lock
        // is free; background work first lets waiting threads in.
        let (turn, taken) = match how {
            Begin::Parked => (None, None),
            Begin::Background => (Some(shared.make_way(|| None::<()>).0), None),
            Begin::Foreground => {
                let (turn, taken) = shared.make_way(|| WriterGuard::try_foreground(&shared.writer));
                (Some(turn), taken)
            }
        };
        let mut writer = match (taken, how) {
            (Some(writer), _) => writer,
            (None, Begin::Background) => WriterGuard::background(&shared.writer, &shared.waiting),
            (None, _) => WriterGuard::foreground(&shared.writer, &shared.waiting),
        };
        drop(turn);
        if let Some(why) = &writer.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        // Pages freed by commits that every open snapshot is at or past can
        // no longer be seen by anyone: make them reusable.
        let mut open = std::mem::take(&mut writer.snapshots);
        shared.state.lock().readers.snapshots(&mut open);
        writer.release_pending(&open, &shared.unwritten, retire);
        writer.snapshots = open;
        shared.publish_space(&writer);
        let meta = writer.meta;
        let pages = MappedPages {
            mapping: Arc::clone(&writer.mapping),
            hwm: meta.hwm,
            file_pages: writer.file_len / shared.limits.page_size as u64,
            written: writer.written_txid,
            newest: meta.txid,
            limits: shared.limits,
        };
        Ok(WriteTxn {
            shared: Arc::clone(shared),
            pages,
            txid: meta.txid + 1,
            serial: shared.next_serial(),
            hwm: meta.hwm,
            dirty: DirtyPages::default(),
            allocated: Vec::new(),
            freed: Vec::new(),
            txn_free: ExtentSet::new(),
            catalog: meta.catalog,
            tables: Vec::new(),
            scratch: Vec::with_capacity(shared.limits.page_size),
            changed: false,
            durability: shared.durability,
            shrunk: false,
            hold: false,
            drop_old_freelist: false,
            writer,
        })
    }

    /// Whether a foreground writer is waiting for this transaction to end:
    /// batched background work ends its batch at the next safe point.
    pub(crate) fn writer_waiting(&self) -> bool {
        self.shared.waiting.foreground()
    }

    /// Whether the commit would change anything.
    pub(crate) fn is_changed(&self) -> bool {
        self.changed || !self.freed.is_empty()
    }

    /// Pages (runs) this transaction holds in memory.
    pub(crate) fn dirty_pages(&self) -> usize {
        self.dirty.len()
    }

    /// The handle of a table this transaction has opened, if it has.
    pub(crate) fn opened_table(&self, name: &str) -> Option<Table> {
        let i = self.tables.iter().position(|t| &*t.name == name)?;
        Some(self.handle(i))
    }

    /// The id this transaction commits as.
    pub fn txid(&self) -> u64 {
        self.txid
    }

    /// Makes the commit write a free list and a meta even without changes
    /// (how `Db::sync` makes unsynced commits durable).
    pub(crate) fn force(&mut self) {
        self.changed = true;
    }

    /// Overrides the database's [`Durability`] for this commit only.
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// Opens `name`, creating it (empty) if it does not exist.
    pub fn open_table(&mut self, name: &str) -> Result<Table> {
        check_table_name(name)?;
        if let Some(table) = self.opened_table(name) {
            return Ok(table);
        }
        let (record, dirty) = match btree::get(&*self, self.catalog, name.as_bytes())? {
            Some(rec) => (TableRecord::decode(rec, name.as_bytes())?, false),
            None => (
                TableRecord {
                    root: Root::NONE,
                    len: 0,
                },
                true,
            ),
        };
        self.changed |= dirty;
        self.tables.push(TableState {
            name: name.into(),
            record,
            dirty,
        });
        Ok(self.handle(self.tables.len() - 1))
    }

    /// Opens `name` if it exists, without creating it.
    fn open_existing_table(&mut self, name: &str) -> Result<Option<Table>> {
        if let Some(table) = self.opened_table(name) {
            return Ok(Some(table));
        }
        if btree::get(&*self, self.catalog, name.as_bytes())?.is_none() {
            return Ok(None);
        }
        self.open_table(name).map(Some)
    }

    /// Removes a table and all its entries. Returns false if it did not
    /// exist.
    pub fn delete_table(&mut self, name: &str) -> Result<bool> {
        check_table_name(name)?;
        let Some(t) = self.open_existing_table(name)? else {
            return Ok(false);
        };
        let root = self.tables[t.slot as usize].record.root;
        tree::free_all(self, root)?;
        self.tables.remove(t.slot as usize);
        // Handles after the removed one now point one slot off: retire them
        // all by changing this transaction's serial.
        self.serial = self.shared.next_serial();
        let mut catalog = self.catalog;
        tree::remove(self, &mut catalog, name.as_bytes())?;
        self.catalog = catalog;
        self.changed = true;
        Ok(true)
    }

    /// Moves planned leaves (see `txn::relocate`) whose pages or overflow
    /// runs still lie at or above `limit` toward the start of the file, from
    /// where `r` stands: at most `max_leaves` leaves, stopping once about
    /// `budget` pages were moved. Returns the pages moved. A planned table
    /// dropped since is skipped. Used by defragmentation.
    pub(crate) fn relocate(
        &mut self,
        limit: PageId,
        r: &mut Relocations,
        max_leaves: usize,
        budget: usize,
    ) -> Result<usize> {
        let end = r.plan.len().min(r.applied + max_leaves.max(1));
        let slot = match &r.table {
            None => None,
            Some(name) => match self.open_existing_table(name)? {
                Some(t) => Some(t.slot as usize),
                None => {
                    r.applied = r.plan.len();
                    return Ok(0);
                }
            },
        };
        let mut root = match slot {
            None => self.catalog,
            Some(slot) => self.tables[slot].record.root,
        };
        let mut moved = 0;
        while r.applied < end && moved < budget {
            moved += relocate_leaf(self, &mut root, r.plan.key(r.applied), limit)?;
            r.applied += 1;
        }
        if moved > 0 {
            match slot {
                None => self.catalog = root,
                Some(slot) => {
                    let st = &mut self.tables[slot];
                    st.record.root = root;
                    st.dirty = true;
                }
            }
            self.changed = true;
        }
        Ok(moved)
    }

    /// Gives the free run at the end of the file back: lowers the
    /// high-water mark to the start of that run. The file is truncated once
    /// this commit is durable (the commit is made durable whatever the
    /// database's setting). Returns the pages released; only valid before
    /// anything else in this transaction.
    pub(crate) fn shrink(&mut self) -> u64 {
        if !self.dirty.is_empty() || !self.allocated.is_empty() {
            return 0;
        }
        // The tail: free runs, and the last commit's free-list run, which
        // this commit replaces (it is only needed by a meta that stops being
        // the durable one when this commit is synced, before the truncation).
        let fl = self.writer.meta.freelist;
        let fl_span = self.writer.meta.freelist_span as u64;
        let mut start = self.hwm;
        loop {
            if let Some((s, _)) = self.writer.free.run_ending_at(start) {
                start = s;
            } else if !fl.is_none() && fl.id + fl_span == start && !self.drop_old_freelist {
                start = fl.id;
                self.drop_old_freelist = true;
            } else {
                break;
            }
        }
        let len = self.hwm - start;
        if len == 0 {
            return 0;
        }
        let w = &mut *self.writer;
        for (s, l) in w.free.split_off_from(start) {
            w.unreferenced.remove(s, l);
        }
        self.hwm = start;
        self.shrunk = true;
        self.changed = true;
        self.durability = Durability::Immediate;
        len
    }

    fn handle(&self, slot: usize) -> Table {
        Table {
            owner: self.serial,
            slot: slot as u32,
            record: self.tables[slot].record,
        }
    }

    fn slot(&self, table: Table) -> Result<usize> {
        if table.owner != self.serial || table.slot as usize >= self.tables.len() {
            return Err(Error::ForeignTable { table: table.slot });
        }
        Ok(table.slot as usize)
    }

    fn check_entry(&self, key: &[u8], value: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let max = self.shared.limits.max_key;
        if key.len() > max {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max,
            });
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE_LEN,
            });
        }
        Ok(())
    }

    /// Inserts or replaces `key`; returns true if it replaced a value.
    pub fn insert(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<bool> {
        let slot = self.slot(table)?;
        self.check_entry(key, value)?;
        let mut root = self.tables[slot].record.root;
        let existed = tree::insert(self, &mut root, key, value)?;
        let t = &mut self.tables[slot];
        t.record.root = root;
        t.record.len += u64::from(!existed);
        t.dirty = true;
        self.changed = true;
        Ok(existed)
    }

    /// Inserts `key`, absent from the table, with a value completed by
    /// `fill` from the entry after it, in one descent (see
    /// [`tree::insert_with`]). Returns false, with the table's entries
    /// unchanged, when `fill` declines or `key` is present.
    pub(crate) fn insert_with(
        &mut self,
        table: Table,
        key: &[u8],
        value: &mut [u8],
        fill: impl FnOnce(tree::Next<'_>, &mut [u8]) -> Result<bool>,
    ) -> Result<bool> {
        let slot = self.slot(table)?;
        self.check_entry(key, value)?;
        let mut root = self.tables[slot].record.root;
        let inserted = tree::insert_with(self, &mut root, key, value, fill);
        // The path is dirty even when nothing was inserted (or an error
        // came after the descent): the old root is already freed.
        let t = &mut self.tables[slot];
        t.record.root = root;
        t.dirty = true;
        self.changed = true;
        let inserted = inserted?;
        t.record.len += u64::from(inserted);
        Ok(inserted)
    }

    /// Removes `key`; returns true if it was present.
    pub fn remove(&mut self, table: Table, key: &[u8]) -> Result<bool> {
        let slot = self.slot(table)?;
        let mut root = self.tables[slot].record.root;
        let existed = tree::remove(self, &mut root, key)?;
        if existed {
            let t = &mut self.tables[slot];
            t.record.root = root;
            t.dirty = true;
            self.changed = true;
            t.count_removal()?;
        }
        Ok(existed)
    }

    /// Removes `key`, expected to be present, in one descent (see
    /// [`tree::remove_expected`]); returns true if it was present.
    pub(crate) fn remove_expected(&mut self, table: Table, key: &[u8]) -> Result<bool> {
        let slot = self.slot(table)?;
        let mut root = self.tables[slot].record.root;
        if root.is_none() {
            return Ok(false);
        }
        let existed = tree::remove_expected(self, &mut root, key);
        // The path is dirty even when nothing was removed (or an error
        // came after the descent): the old root is already freed.
        let t = &mut self.tables[slot];
        t.record.root = root;
        t.dirty = true;
        self.changed = true;
        let existed = existed?;
        if existed {
            t.count_removal()?;
        }
        Ok(existed)
    }

    /// Discards the transaction (the same as dropping it).
    pub fn abort(self) {}

    /// A zeroed buffer for `span` pages, from the writer's pool if possible.
    fn buffer(&mut self, span: usize) -> Box<[u8]> {
        let ps = self.shared.limits.page_size;
        if span == 1 {
            if let Some(mut b) = self.writer.buffers.pop() {
                b.fill(0);
                return b;
            }
        }
        vec![0u8; span * ps].into_boxed_slice()
    }

    /// Allocates `span` contiguous pages: from this transaction's own freed
    /// pages, then the free set, then the end of the file.
    fn alloc(&mut self, span: u64) -> Result<PageId> {
        if let Some(id) = self.txn_free.take_first_fit(span) {
            return Ok(id);
        }
        let w = &mut *self.writer;
        if let Some(id) = w.free.take_first_fit(span) {
            let removed = w.unreferenced.remove(id, span);
            debug_assert!(removed, "free pages are unreferenced");
            self.allocated.push((id, span));
            w.allocated_since_sync.insert_overlapping(id, span);
            return Ok(id);
        }
        let id = self.hwm;
        self.hwm += span;
        w.allocated_since_sync.insert_overlapping(id, span);
        Ok(id)
    }

    /// Fills and seals a new overflow run at `id` and keeps it dirty.
    fn fill_overflow(&mut self, id: PageId, span: u32, value: &[u8]) -> PageRef {
        let mut buf = self.buffer(span as usize);
        init_header(&mut buf, PageKind::Overflow, id, self.txid, span);
        set_word(&mut buf, value.len() as u32);
        buf[HEADER_LEN..HEADER_LEN + value.len()].copy_from_slice(value);
        let crc = page::seal(&mut buf);
        self.dirty.insert(id, buf);
        PageRef {
            id,
            txid: self.txid,
            crc,
        }
    }

    /// Gives back a run allocated by this transaction that was never used.
    fn release(&mut self, id: PageId, span: u64) {
        self.txn_free.insert(id, span);
    }
}

impl PageSource for WriteTxn {
    fn limits(&self) -> &Limits {
        &self.pages.limits
    }

    #[inline]
    fn node(&self, at: PageRef) -> Result<Node<'_>> {
        if at.txid == self.txid {
            return match self.dirty.get(&at.id) {
                Some(buf) => Ok(Node::new(buf)),
                None => Err(Error::corrupt(
                    at.id,
                    "pointer to a dirty page that does not exist",
                )),
            };
        }
        self.pages
            .node(at, &self.shared.verified, &self.shared.unwritten)
    }

    fn overflow(&self, at: PageRef, len: u32) -> Result<&[u8]> {
        if at.txid == self.txid {
            return match self.dirty.get(&at.id) {
                Some(buf) => Ok(&buf[HEADER_LEN..HEADER_LEN + len as usize]),
                None => Err(Error::corrupt(
                    at.id,
                    "pointer to a dirty overflow run that does not exist",
                )),
            };
        }
        self.pages
            .overflow(at, len, &self.shared.verified, &self.shared.unwritten)
    }
}

impl PageStore for WriteTxn {
    fn txid(&self) -> u64 {
        self.txid
    }

    fn make_dirty(&mut self, at: PageRef) -> Result<PageId> {
        if at.txid == self.txid {
            return Ok(at.id);
        }
        let id = self.alloc(1)?;
        // Every byte is copied over: a pooled buffer need not be zeroed.
        let mut buf = match self.writer.buffers.pop() {
            Some(b) => b,
            None => self.buffer(1),
        };
        buf.copy_from_slice(
            self.pages
                .node(at, &self.shared.verified, &self.shared.unwritten)?
                .bytes(),
        );
        page::write_u64(&mut buf, 8, id);
        page::write_u64(&mut buf, 16, self.txid);
        self.dirty.insert(id, buf);
        self.freed.push((at.id, 1));
        Ok(id)
    }

    fn alloc_node(&mut self, kind: PageKind) -> Result<PageId> {
        let id = self.alloc(1)?;
        let mut buf = self.buffer(1);
        NodeMut::init(&mut buf, kind, id, self.txid);
        self.dirty.insert(id, buf);
        Ok(id)
    }

    #[inline]
    fn dirty(&mut self, id: PageId) -> &mut [u8] {
        self.dirty
            .get_mut(&id)
            .expect("page made dirty before it is changed")
    }

    fn free_node(&mut self, id: PageId) {
        match self.dirty.remove(&id) {
            Some(buf) => {
                self.writer.recycle(std::iter::once(buf));
                self.txn_free.insert(id, 1);
            }
            None => self.freed.push((id, 1)),
        }
    }

    fn write_overflow(&mut self, value: &[u8]) -> Result<PageRef> {
        let span = span_for(value.len(), self.shared.limits.page_size);
        let id = self.alloc(span as u64)?;
        Ok(self.fill_overflow(id, span, value))
    }

    fn write_overflow_below(&mut self, value: &[u8], limit: PageId) -> Result<Option<PageRef>> {
        let span = span_for(value.len(), self.shared.limits.page_size) as u64;
        let w = &mut *self.writer;
        let Some(id) = w.free.take_first_fit(span) else {
            return Ok(None);
        };
        if id + span > limit {
            w.free.insert(id, span);
            return Ok(None);
        }
        let removed = w.unreferenced.remove(id, span);
        debug_assert!(removed, "free pages are unreferenced");
        self.allocated.push((id, span));
        w.allocated_since_sync.insert_overlapping(id, span);
        Ok(Some(self.fill_overflow(id, span as u32, value)))
    }

    fn free_overflow(&mut self, at: PageRef, len: u32) {
        let span = span_for(len as usize, self.shared.limits.page_size) as u64;
        if at.txid == self.txid && self.dirty.remove(&at.id).is_some() {
            self.txn_free.insert(at.id, span);
        } else {
            self.freed.push((at.id, span));
        }
    }

    fn take_scratch(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.scratch)
    }

    fn put_scratch(&mut self, scratch: Vec<u8>) {
        self.scratch = scratch;
    }
}

impl TxnRead for WriteTxn {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<&[u8]>> {
        let slot = self.slot(table)?;
        btree::get(self, self.tables[slot].record.root, key)
    }

    fn range(&self, table: Table, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Entries<'_>> {
        let slot = self.slot(table)?;
        let root = self.tables[slot].record.root;
        Ok(Entries {
            inner: EntriesInner::Write(Range::new(self, root, start, end)?),
        })
    }

    fn table_len(&self, table: Table) -> Result<u64> {
        Ok(self.tables[self.slot(table)?].record.len)
    }

    fn cursor(&self, table: Table) -> Result<TableCursor<'_>> {
        let root = self.tables[self.slot(table)?].record.root;
        Ok(TableCursor {
            inner: CursorInner::Write(Cursor::new(self, root)),
            on_entry: false,
        })
    }
}

impl Drop for WriteTxn {
    fn drop(&mut self) {
        if !self.allocated.is_empty() || !self.dirty.is_empty() {
            self.rollback();
        }
        self.writer
            .end(&self.shared.waiting, self.shared.parked.locking());
    }
}

impl std::fmt::Debug for WriteTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTxn")
            .field("txid", &self.txid)
            .field("dirty_pages", &self.dirty.len())
            .finish()
    }
}

/// A failure that costs nothing but space (the file stays longer than it
/// needs to be); reported on standard error only in debug builds.
pub(super) fn log_ignored(what: &str, e: &std::io::Error) {
    if cfg!(debug_assertions) {
        eprintln!("revkv: {what} failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use crate::btree::write::Next;
    use crate::{Options, TxnRead};
    use std::collections::BTreeMap;
    use std::ops::Bound;

    /// `insert_with` shows `fill` exactly what follows the new key: the
    /// next entry when its leaf holds one, else a bound no later entry is
    /// below. Random inserts (values inline and in overflow runs), removals
    /// of both kinds (which leave separators older than the keys around
    /// them; `remove_expected` also of absent keys), commits,
    /// and `insert_with` calls accepted or declined, on 512-byte pages so
    /// the tree is deep and boundaries are everywhere; checked against a
    /// `BTreeMap`, and every kind of `Next` must have been seen.
    #[test]
    #[cfg_attr(miri, ignore = "reads the committed pages through the file mapping")]
    fn insert_with_shows_what_follows_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = Options::new()
            .page_size(512)
            .open(dir.path().join("db"))
            .unwrap();
        let seed = 0x001e_5e47_u64;
        let mut rng = crate::testing::Xorshift::new(seed);
        let mut next_random = move || rng.next();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut seen = [0u32; 4];
        let mut w = db.begin_write().unwrap();
        let mut t = w.open_table("t").unwrap();
        for step in 0..20_000u32 {
            let key = format!("k{:04}", next_random() % 3000).into_bytes();
            let len = match next_random() % 10 {
                0 => 700,
                1..=3 => 5,
                _ => 60,
            };
            let value = vec![step as u8; len];
            match next_random() % 8 {
                0..=2 => {
                    w.insert(t, &key, &value).unwrap();
                    model.insert(key, value);
                }
                3 => {
                    // Both removals, the one that looks the key up first
                    // and the one that expects it, on keys present or not.
                    let removed = if next_random() % 2 == 0 {
                        w.remove(t, &key).unwrap()
                    } else {
                        w.remove_expected(t, &key).unwrap()
                    };
                    let present = model.remove(&key).is_some();
                    assert_eq!(removed, present, "seed {seed:#x}, step {step}, key {key:?}");
                }
                4 if step % 5 == 0 => {
                    w.commit().unwrap();
                    w = db.begin_write().unwrap();
                    t = w.open_table("t").unwrap();
                }
                _ => {
                    let accept = next_random() % 4 != 0;
                    let successor = model
                        .range::<[u8], _>((Bound::Excluded(&key[..]), Bound::Unbounded))
                        .next();
                    let present = model.contains_key(&key);
                    let ctx = format!("seed {seed:#x}, step {step}, key {key:?}");
                    let mut buf = value.clone();
                    let inserted = w
                        .insert_with(t, &key, &mut buf, |next, _| {
                            match next {
                                Next::Entry { key: k, value: v } => {
                                    seen[0] += 1;
                                    assert_eq!(
                                        successor,
                                        Some((&k.to_vec(), &v.to_vec())),
                                        "{ctx}"
                                    );
                                }
                                Next::OutOfLine => {
                                    seen[1] += 1;
                                    let (_, v) = successor.expect("an entry follows");
                                    assert_eq!(v.len(), 700, "{ctx}");
                                }
                                Next::Beyond(Some(bound)) => {
                                    seen[2] += 1;
                                    assert!(bound > &key[..], "{ctx}");
                                    if let Some((k, _)) = successor {
                                        assert!(&k[..] >= bound, "{ctx}: {k:?} below {bound:?}");
                                    }
                                }
                                Next::Beyond(None) => {
                                    seen[3] += 1;
                                    assert_eq!(successor, None, "{ctx}");
                                }
                            }
                            Ok(accept)
                        })
                        .unwrap();
                    assert_eq!(inserted, accept && !present, "{ctx}");
                    if inserted {
                        model.insert(key, value);
                    }
                }
            }
        }
        w.commit().unwrap();
        let r = db.begin_read().unwrap();
        let t = r.open_table("t").unwrap();
        let got: Vec<(Vec<u8>, Vec<u8>)> = r
            .range(t, Bound::Unbounded, Bound::Unbounded)
            .unwrap()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<crate::Result<_>>()
            .unwrap();
        let want: Vec<_> = model.into_iter().collect();
        assert!(
            got == want,
            "seed {seed:#x}: the table differs from the model"
        );
        assert!(
            seen.iter().all(|&n| n > 0),
            "seed {seed:#x}: kinds seen {seen:?}"
        );
        db.check().unwrap();
    }

    /// A table record whose entry count is lower than what its tree holds
    /// (a corrupt count from the file) makes a removal fail with a corrupt
    /// file error, by either removal, instead of overflowing the count.
    #[test]
    #[cfg_attr(miri, ignore = "reads the committed pages through the file mapping")]
    fn a_removal_below_a_zero_count_is_a_corrupt_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = Options::new().open(dir.path().join("db")).unwrap();
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("t").unwrap();
        w.insert(t, b"a", b"1").unwrap();
        w.insert(t, b"b", b"2").unwrap();
        let slot = w.slot(t).unwrap();
        w.tables[slot].record.len = 0;
        let err = w.remove(t, b"a").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("\"t\""), "{err}");
        let err = w.remove_expected(t, b"b").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
    }
}

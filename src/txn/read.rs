//! Read transactions: a fixed snapshot of the last commit.

use std::ops::Bound;
use std::sync::Arc;

use super::pages::MappedPages;
use super::table::{
    check_table_name, CursorInner, Entries, EntriesInner, Table, TableCursor, TableRecord, TxnRead,
};
use super::Shared;
use crate::btree::cursor::{Cursor, Range};
use crate::btree::node::{Limits, Node};
use crate::btree::{self, PageSource, Root};
use crate::error::{Error, Result};
use crate::storage::page::PageRef;

/// A read-only snapshot of the database as of the commit that was last when
/// it began.
///
/// It never blocks the writer and is never blocked by it; while it is open,
/// pages it can see are not reused, so a long-lived reader only makes the file
/// grow (see [`Stats::pinned_pages`](crate::Stats)). It is `Send` and `Sync`:
/// it can move to another thread or be shared between threads.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use revkv::{Db, TxnRead};
/// let db = Db::open(dir.path().join("db"))?;
/// let mut w = db.begin_write()?;
/// let t = w.open_table("fruit")?;
/// w.insert(t, b"apple", b"red")?;
/// w.commit()?;
///
/// let r = db.begin_read()?;
/// let t = r.open_table("fruit")?;
/// assert_eq!(r.get(t, b"apple")?, Some(&b"red"[..]));
/// # Ok::<(), revkv::Error>(())
/// ```
pub struct ReadTxn {
    shared: Arc<Shared>,
    pages: MappedPages,
    txid: u64,
    catalog: Root,
    pub(crate) freelist: (PageRef, u32),
    slot: usize,
    serial: u64,
}

impl ReadTxn {
    pub(crate) fn begin(shared: &Arc<Shared>) -> ReadTxn {
        let mut state = shared.state.lock();
        let snap = state.snapshot;
        let slot = state.readers.register(snap.txid);
        let mapping = Arc::clone(&state.mapping);
        drop(state);
        ReadTxn {
            shared: Arc::clone(shared),
            pages: MappedPages {
                mapping,
                hwm: snap.hwm,
                file_pages: snap.file_pages,
                written: snap.written,
                newest: snap.txid,
                limits: shared.limits,
            },
            txid: snap.txid,
            catalog: snap.catalog,
            freelist: snap.freelist,
            slot,
            serial: shared.next_serial(),
        }
    }

    /// The transaction id of the commit this snapshot shows.
    pub fn txid(&self) -> u64 {
        self.txid
    }

    /// Opens an existing table; [`Error::TableNotFound`] if it does not
    /// exist in this snapshot.
    pub fn open_table(&self, name: &str) -> Result<Table> {
        check_table_name(name)?;
        let rec = btree::get(self, self.catalog, name.as_bytes())?
            .ok_or_else(|| Error::TableNotFound(name.to_string()))?;
        Ok(Table {
            owner: self.serial,
            slot: 0,
            record: TableRecord::decode(rec, name.as_bytes())?,
        })
    }

    /// The names of all tables in this snapshot, in order.
    pub fn table_names(&self) -> Result<Vec<String>> {
        Range::new(self, self.catalog, Bound::Unbounded, Bound::Unbounded)?
            .map(|e| e.map(|(k, _)| String::from_utf8_lossy(k).into_owned()))
            .collect()
    }

    /// A handle for this transaction to a table whose handle was taken in
    /// another snapshot of the same commit (same txid: same roots). Saves
    /// the catalog lookup when many reads share a commit.
    pub(crate) fn adopt(&self, table: Table) -> Table {
        Table {
            owner: self.serial,
            slot: 0,
            record: table.record,
        }
    }

    fn record(&self, table: Table) -> Result<TableRecord> {
        if table.owner != self.serial {
            return Err(Error::ForeignTable { table: table.slot });
        }
        Ok(table.record)
    }

    pub(crate) fn catalog(&self) -> Root {
        self.catalog
    }

    pub(crate) fn hwm(&self) -> u64 {
        self.pages.hwm
    }

    pub(crate) fn mapped(&self) -> &MappedPages {
        &self.pages
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl PageSource for ReadTxn {
    fn limits(&self) -> &Limits {
        &self.pages.limits
    }

    #[inline]
    fn node(&self, at: PageRef) -> Result<Node<'_>> {
        self.pages
            .node(at, &self.shared.verified, &self.shared.unwritten)
    }

    fn overflow(&self, at: PageRef, len: u32) -> Result<&[u8]> {
        self.pages
            .overflow(at, len, &self.shared.verified, &self.shared.unwritten)
    }

    #[inline]
    fn prefetch(&self, at: PageRef) {
        self.pages.prefetch(at);
    }
}

impl TxnRead for ReadTxn {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<&[u8]>> {
        btree::get(self, self.record(table)?.root, key)
    }

    fn range(&self, table: Table, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Entries<'_>> {
        let root = self.record(table)?.root;
        Ok(Entries {
            inner: EntriesInner::Read(Range::new(self, root, start, end)?),
        })
    }

    fn table_len(&self, table: Table) -> Result<u64> {
        Ok(self.record(table)?.len)
    }

    fn cursor(&self, table: Table) -> Result<TableCursor<'_>> {
        let root = self.record(table)?.root;
        Ok(TableCursor {
            inner: CursorInner::Read(Cursor::new(self, root)),
            on_entry: false,
        })
    }
}

impl Drop for ReadTxn {
    fn drop(&mut self) {
        self.shared.state.lock().readers.unregister(self.slot);
    }
}

impl std::fmt::Debug for ReadTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadTxn").field("txid", &self.txid).finish()
    }
}

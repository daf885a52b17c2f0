//! Named tables and the read operations both kinds of transaction share.
//!
//! The catalog is itself a B+tree: table name -> [`TableRecord`]. A table
//! handle is only valid inside the transaction that opened it.

use std::ops::Bound;

use crate::btree::cursor::Range;
use crate::btree::Root;
use crate::error::{Error, Result};
use crate::storage::page::{read_u32, read_u64, write_u32, write_u64, PageRef};

/// Length of an encoded [`TableRecord`].
pub(crate) const RECORD_LEN: usize = 28;
/// Longest table name.
pub const MAX_TABLE_NAME: usize = 255;

/// What the catalog stores for a table: its root and its number of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableRecord {
    pub root: Root,
    pub len: u64,
}

impl TableRecord {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        write_u64(&mut b, 0, self.root.id);
        write_u64(&mut b, 8, self.root.txid);
        write_u32(&mut b, 16, self.root.crc);
        write_u64(&mut b, 20, self.len);
        b
    }

    pub fn decode(b: &[u8], name: &[u8]) -> Result<TableRecord> {
        if b.len() != RECORD_LEN {
            return Err(Error::CorruptFile(format!(
                "catalog record of table {:?} has {} bytes, expected {RECORD_LEN}",
                String::from_utf8_lossy(name),
                b.len()
            )));
        }
        Ok(TableRecord {
            root: PageRef {
                id: read_u64(b, 0),
                txid: read_u64(b, 8),
                crc: read_u32(b, 16),
            },
            len: read_u64(b, 20),
        })
    }
}

pub(crate) fn check_table_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_TABLE_NAME {
        return Err(Error::InvalidOption(format!(
            "table name must be 1 to {MAX_TABLE_NAME} bytes, got {}",
            name.len()
        )));
    }
    Ok(())
}

/// A handle to a named table, valid in the transaction that opened it.
///
/// Cheap to copy. Using it with another transaction fails with
/// [`Error::ForeignTable`].
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub(crate) owner: u64,
    pub(crate) slot: u32,
    pub(crate) record: TableRecord,
}

/// Reads shared by [`ReadTxn`](crate::ReadTxn) and [`WriteTxn`](crate::WriteTxn)
/// (a write transaction reads its own uncommitted changes).
pub trait TxnRead {
    /// The value of `key` in `table`, borrowed from the transaction.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<&[u8]>>;
    /// The entries of `table` with keys between `start` and `end`, in key
    /// order (iterate with `.rev()` for descending order). Nothing is read
    /// ahead: each step touches only the pages it needs.
    fn range(&self, table: Table, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Entries<'_>>;
    /// Number of entries in `table` (kept in the catalog: O(1)).
    fn table_len(&self, table: Table) -> Result<u64>;
}

/// An iterator over table entries, from [`TxnRead::range`]. Yields
/// `Result` because a page may turn out to be corrupt; after an error it
/// ends.
pub struct Entries<'a> {
    pub(crate) inner: EntriesInner<'a>,
}

pub(crate) enum EntriesInner<'a> {
    Read(Range<'a, crate::txn::read::ReadTxn>),
    Write(Range<'a, crate::txn::write::WriteTxn>),
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            EntriesInner::Read(r) => r.next(),
            EntriesInner::Write(r) => r.next(),
        }
    }
}

impl DoubleEndedIterator for Entries<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            EntriesInner::Read(r) => r.next_back(),
            EntriesInner::Write(r) => r.next_back(),
        }
    }
}

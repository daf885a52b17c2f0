//! Named tables and the read operations both kinds of transaction share.
//!
//! The catalog is itself a B+tree: table name -> [`TableRecord`]. A table
//! handle is only valid inside the transaction that opened it.

use std::ops::Bound;

use crate::btree::cursor::{Cursor, Range};
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
    /// A cursor over `table`, positioned nowhere until it seeks.
    fn cursor(&self, table: Table) -> Result<TableCursor<'_>>;
}

/// A movable position in a table: seek to a key, step forward or back.
/// Entries are borrowed from the transaction.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use revkv::{Db, TxnRead};
/// let db = Db::open(dir.path().join("db"))?;
/// let mut w = db.begin_write()?;
/// let t = w.open_table("t")?;
/// for k in [b"a", b"c", b"e"] {
///     w.insert(t, k, b"")?;
/// }
/// let mut c = w.cursor(t)?;
/// assert_eq!(c.seek(b"b")?.map(|(k, _)| k), Some(&b"c"[..]));
/// assert_eq!(c.next()?.map(|(k, _)| k), Some(&b"e"[..]));
/// assert_eq!(c.next()?, None);
/// # Ok::<(), revkv::Error>(())
/// ```
pub struct TableCursor<'a> {
    pub(crate) inner: CursorInner<'a>,
    pub(crate) on_entry: bool,
}

pub(crate) enum CursorInner<'a> {
    Read(Cursor<'a, crate::txn::read::ReadTxn>),
    Write(Cursor<'a, crate::txn::write::WriteTxn>),
}

macro_rules! with_cursor {
    ($self:ident, $c:ident => $e:expr) => {
        match &mut $self.inner {
            CursorInner::Read($c) => $e,
            CursorInner::Write($c) => $e,
        }
    };
}

impl<'a> TableCursor<'a> {
    fn current(&mut self, moved: bool) -> Result<Option<(&'a [u8], &'a [u8])>> {
        self.on_entry = moved;
        if !moved {
            return Ok(None);
        }
        with_cursor!(self, c => c.entry())
    }

    /// Moves to the first entry with a key at or after `key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let moved = with_cursor!(self, c => c.seek(key))?;
        self.current(moved)
    }

    /// Moves to the first entry with a key at or after `key`, for a key at
    /// or after the current entry: reads only the branches below the
    /// lowest one whose subtree bounds it (see `Cursor::seek_forward`).
    pub(crate) fn seek_forward(&mut self, key: &[u8]) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let moved = with_cursor!(self, c => c.seek_forward(key))?;
        self.current(moved)
    }

    /// Moves to the last entry with a key at or before `key`.
    pub fn seek_back(&mut self, key: &[u8]) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let moved = with_cursor!(self, c => c.seek_back(key))?;
        self.current(moved)
    }

    /// Moves to the first entry.
    pub fn first(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let moved = with_cursor!(self, c => c.first())?;
        self.current(moved)
    }

    /// Moves to the last entry.
    pub fn last(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let moved = with_cursor!(self, c => c.last())?;
        self.current(moved)
    }

    /// Moves to the next entry; None past the end (and stays there).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        if !self.on_entry {
            return Ok(None);
        }
        let moved = with_cursor!(self, c => c.next())?;
        self.current(moved)
    }

    /// Moves to the previous entry; None before the start (and stays there).
    pub fn prev(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        if !self.on_entry {
            return Ok(None);
        }
        let moved = with_cursor!(self, c => c.prev())?;
        self.current(moved)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::Options;

    /// A seek forward from wherever the cursor stands lands where a seek
    /// from the root does: probes in ascending order (the case it is for)
    /// with steps in between, and now and then one behind the cursor
    /// (which falls back to a plain seek). Dirty pages only, so it runs
    /// under Miri too.
    #[test]
    fn a_seek_forward_lands_where_a_seek_does() {
        let dir = tempfile::tempdir().unwrap();
        let db = Options::new()
            .page_size(512)
            .open(dir.path().join("db"))
            .unwrap();
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("t").unwrap();
        let (keys, rounds) = if cfg!(miri) { (120, 120) } else { (3000, 2000) };
        // Even keys only, of varied length, so odd probes fall between.
        let key = |i: u32| format!("key-{:06}{}", 2 * i, "x".repeat((i % 7) as usize));
        for i in 0..keys {
            w.insert(t, key(i).as_bytes(), &[i as u8; 20]).unwrap();
        }
        let seed = 0x5eed_f0e5u64;
        let mut rng = crate::testing::Xorshift::new(seed);
        let mut next_random = move || rng.next();
        let mut forward = w.cursor(t).unwrap();
        let mut probe = 0u64;
        for round in 0..rounds {
            probe = match next_random() % 16 {
                0 => probe.saturating_sub(next_random() % 400),
                1 => 0,
                _ => probe + next_random() % 9,
            };
            let sought = format!("key-{probe:06}");
            let got = forward.seek_forward(sought.as_bytes()).unwrap();
            let want = w.cursor(t).unwrap().seek(sought.as_bytes()).unwrap();
            assert_eq!(got, want, "seed {seed:#x}, round {round}, probe {sought}");
            if got.is_some() && next_random() % 3 == 0 {
                let got = forward.next().unwrap();
                let mut plain = w.cursor(t).unwrap();
                plain.seek(sought.as_bytes()).unwrap();
                assert_eq!(got, plain.next().unwrap(), "seed {seed:#x}, round {round}");
            }
            if probe > 2 * keys as u64 + 50 {
                probe = 0;
            }
        }
    }
}

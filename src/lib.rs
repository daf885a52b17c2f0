//! revkv: an embeddable MVCC storage engine.
//!
//! The layers, bottom up, each depending only on those below it:
//!
//! * [`storage`]: the file of checksummed pages, its two meta pages, the
//!   free-page list and the mapping through which readers see pages.
//! * `btree`: a copy-on-write B+tree over those pages.
//! * transactions ([`Db`], [`ReadTxn`], [`WriteTxn`]): snapshots, the single
//!   writer and crash-safe commits.
//! * [`defrag`]: online defragmentation of the file.
//! * [`quota`]: the space quota and its persisted alarms.
//! * [`mvcc`]: the revision store with etcd's v3 semantics, its compaction
//!   and status.
//! * [`stream`]: range reads pulled chunk by chunk at one revision.
//! * [`watch`]: the changes to a key range from any revision on, pulled.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use revkv::{Db, TxnRead};
//! let db = Db::open(dir.path().join("example.db"))?;
//! let mut w = db.begin_write()?;
//! let pods = w.open_table("pods")?;
//! w.insert(pods, b"/registry/pods/default/web-1", b"{...}")?;
//! w.commit()?;
//!
//! let r = db.begin_read()?;
//! let pods = r.open_table("pods")?;
//! assert_eq!(r.table_len(pods)?, 1);
//! # Ok::<(), revkv::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod btree;
pub mod defrag;
pub mod error;
pub mod mvcc;
pub mod quota;
pub mod storage;
pub mod stream;
mod txn;
pub mod watch;

#[cfg(feature = "fault-injection")]
pub mod testing;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use defrag::{DefragOptions, DefragReport};
pub use error::{Error, ErrorKind, PageId, Result};
pub use txn::{
    CheckReport, Db, Durability, Entries, LostPart, Options, ReadTxn, Recovery, SalvageReport,
    SnapshotReport, Stats, Table, TableCursor, TxnRead, WriteTxn, DEFAULT_UNWRITTEN_LIMIT,
    MAX_TABLE_NAME, MAX_VALUE_LEN,
};

/// The README's examples, run as doctests so they never go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

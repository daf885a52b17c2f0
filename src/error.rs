//! The one public error type of the crate.
//!
//! Every failure has its own [`ErrorKind`] so callers can match on what went
//! wrong, and every message says what and where (page, key, revision). Where
//! etcd has words for a failure, the message uses etcd's exact words.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A page number inside the database file (page 0 and 1 are the meta pages).
pub type PageId = u64;

/// The result type of every fallible revkv call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error revkv returns.
///
/// Match on [`Error::kind`] to tell failures apart; the `Display` text is
/// meant for people and logs.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use revkv::{Db, ErrorKind, Options};
/// let path = dir.path().join("missing.db");
/// let err = Options::new().create(false).open(&path).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Io);
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What revkv was doing.
        context: String,
        /// The error the operating system returned.
        #[source]
        source: io::Error,
    },
    /// A page failed its checksum, has the wrong id or transaction, or holds
    /// bytes that cannot be a valid page of its kind.
    #[error("corrupt page {page}: {problem}")]
    Corrupt {
        /// The page that is damaged.
        page: PageId,
        /// What is wrong with it.
        problem: String,
    },
    /// Neither meta page is valid, or the file is shorter than its meta says.
    #[error("corrupt database file: {0}")]
    CorruptFile(String),
    /// The file does not start with revkv's magic number: it is not a revkv
    /// database.
    #[error("not a revkv database: {0}")]
    NotADatabase(String),
    /// The file was written by a format version this build cannot read.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version recorded in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The options ask for a page size other than the file's.
    #[error("page size mismatch: the file uses {file} bytes, the options ask for {requested}")]
    PageSizeMismatch {
        /// The file's page size.
        file: u32,
        /// The page size in the options.
        requested: u32,
    },
    /// An option has a value revkv cannot use.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Another handle (in this or another process) has the file open for
    /// writing, or a writer holds it while a read-only open was asked for.
    #[error("database {path} is locked by another handle: {reason}")]
    Locked {
        /// The database file.
        path: PathBuf,
        /// Why the lock was refused.
        reason: String,
    },
    /// A write was attempted through a read-only handle.
    #[error("database is open read-only")]
    ReadOnly,
    /// The key is empty.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// The key is longer than the largest key a page can hold.
    #[error("key of {len} bytes exceeds the maximum key size of {max} bytes")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The largest key allowed.
        max: usize,
    },
    /// The value is longer than the largest value allowed.
    #[error("value of {len} bytes exceeds the maximum value size of {max} bytes")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The largest value allowed.
        max: usize,
    },
    /// A table name was used that does not exist in this snapshot.
    #[error("table {0:?} does not exist")]
    TableNotFound(String),
    /// A table handle was used with a transaction it does not belong to.
    #[error("table handle {table} does not belong to this transaction")]
    ForeignTable {
        /// The handle's index.
        table: u32,
    },
    /// The revision asked for was removed by compaction.
    #[error("mvcc: required revision has been compacted (revision {requested}, compacted at {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The store's compacted revision.
        compacted: i64,
    },
    /// The revision asked for is later than the store's current revision.
    #[error(
        "mvcc: required revision is a future revision (revision {requested}, current {current})"
    )]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The store's current revision.
        current: i64,
    },
    /// A request is larger than the configured request limit.
    #[error("etcdserver: request is too large ({size} bytes, limit {max})")]
    RequestTooLarge {
        /// The request's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A transaction has more operations than allowed.
    #[error("etcdserver: too many operations in txn request ({ops}, limit {max})")]
    TooManyOps {
        /// Operations in the request's larger branch.
        ops: usize,
        /// The limit.
        max: usize,
    },
    /// A transaction writes the same key twice.
    #[error("etcdserver: duplicate key given in txn request (key {key:?})")]
    DuplicateKey {
        /// The key written twice, lossily as text.
        key: String,
    },
    /// The NOSPACE alarm is raised: the request would add data.
    #[error("etcdserver: mvcc: database space exceeded (database {size} bytes, quota {quota})")]
    NoSpace {
        /// The database's size.
        size: u64,
        /// The quota.
        quota: u64,
    },
    /// A previous commit failed part-way; the handle refuses further writes
    /// until it is reopened, so a half-written state is never built upon.
    #[error("database handle is poisoned by an earlier failed commit: {0}; reopen it")]
    Poisoned(String),
}

/// The kind of an [`Error`], for matching without caring about details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::Io`].
    Io,
    /// See [`Error::Corrupt`] and [`Error::CorruptFile`].
    Corrupt,
    /// See [`Error::NotADatabase`].
    NotADatabase,
    /// See [`Error::UnsupportedVersion`].
    UnsupportedVersion,
    /// See [`Error::PageSizeMismatch`].
    PageSizeMismatch,
    /// See [`Error::InvalidOption`].
    InvalidOption,
    /// See [`Error::Locked`].
    Locked,
    /// See [`Error::ReadOnly`].
    ReadOnly,
    /// See [`Error::EmptyKey`].
    EmptyKey,
    /// See [`Error::KeyTooLarge`].
    KeyTooLarge,
    /// See [`Error::ValueTooLarge`].
    ValueTooLarge,
    /// See [`Error::TableNotFound`].
    TableNotFound,
    /// See [`Error::ForeignTable`].
    ForeignTable,
    /// See [`Error::Poisoned`].
    Poisoned,
    /// See [`Error::Compacted`].
    Compacted,
    /// See [`Error::FutureRevision`].
    FutureRevision,
    /// See [`Error::RequestTooLarge`].
    RequestTooLarge,
    /// See [`Error::TooManyOps`].
    TooManyOps,
    /// See [`Error::DuplicateKey`].
    DuplicateKey,
    /// See [`Error::NoSpace`].
    NoSpace,
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Corrupt { .. } | Error::CorruptFile(_) => ErrorKind::Corrupt,
            Error::NotADatabase(_) => ErrorKind::NotADatabase,
            Error::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            Error::PageSizeMismatch { .. } => ErrorKind::PageSizeMismatch,
            Error::InvalidOption(_) => ErrorKind::InvalidOption,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::ReadOnly => ErrorKind::ReadOnly,
            Error::EmptyKey => ErrorKind::EmptyKey,
            Error::KeyTooLarge { .. } => ErrorKind::KeyTooLarge,
            Error::ValueTooLarge { .. } => ErrorKind::ValueTooLarge,
            Error::TableNotFound(_) => ErrorKind::TableNotFound,
            Error::ForeignTable { .. } => ErrorKind::ForeignTable,
            Error::Poisoned(_) => ErrorKind::Poisoned,
            Error::Compacted { .. } => ErrorKind::Compacted,
            Error::FutureRevision { .. } => ErrorKind::FutureRevision,
            Error::RequestTooLarge { .. } => ErrorKind::RequestTooLarge,
            Error::TooManyOps { .. } => ErrorKind::TooManyOps,
            Error::DuplicateKey { .. } => ErrorKind::DuplicateKey,
            Error::NoSpace { .. } => ErrorKind::NoSpace,
        }
    }

    /// A copy of this error, for handing one failure to every request of a
    /// batch (an I/O error's source is carried over as its kind and text).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corrupt { page, problem } => Error::Corrupt {
                page: *page,
                problem: problem.clone(),
            },
            Error::CorruptFile(m) => Error::CorruptFile(m.clone()),
            Error::NotADatabase(m) => Error::NotADatabase(m.clone()),
            Error::UnsupportedVersion { found, supported } => Error::UnsupportedVersion {
                found: *found,
                supported: *supported,
            },
            Error::PageSizeMismatch { file, requested } => Error::PageSizeMismatch {
                file: *file,
                requested: *requested,
            },
            Error::InvalidOption(m) => Error::InvalidOption(m.clone()),
            Error::Locked { path, reason } => Error::Locked {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::ReadOnly => Error::ReadOnly,
            Error::EmptyKey => Error::EmptyKey,
            Error::KeyTooLarge { len, max } => Error::KeyTooLarge {
                len: *len,
                max: *max,
            },
            Error::ValueTooLarge { len, max } => Error::ValueTooLarge {
                len: *len,
                max: *max,
            },
            Error::TableNotFound(m) => Error::TableNotFound(m.clone()),
            Error::ForeignTable { table } => Error::ForeignTable { table: *table },
            Error::Poisoned(m) => Error::Poisoned(m.clone()),
            Error::Compacted {
                requested,
                compacted,
            } => Error::Compacted {
                requested: *requested,
                compacted: *compacted,
            },
            Error::FutureRevision { requested, current } => Error::FutureRevision {
                requested: *requested,
                current: *current,
            },
            Error::RequestTooLarge { size, max } => Error::RequestTooLarge {
                size: *size,
                max: *max,
            },
            Error::TooManyOps { ops, max } => Error::TooManyOps {
                ops: *ops,
                max: *max,
            },
            Error::DuplicateKey { key } => Error::DuplicateKey { key: key.clone() },
            Error::NoSpace { size, quota } => Error::NoSpace {
                size: *size,
                quota: *quota,
            },
        }
    }

    pub(crate) fn io(context: impl fmt::Display, source: io::Error) -> Error {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    pub(crate) fn corrupt(page: PageId, problem: impl Into<String>) -> Error {
        Error::Corrupt {
            page,
            problem: problem.into(),
        }
    }
}

//! Consistent copies of a live database (etcd's `snapshot save`).
//!
//! The copy is made from one read snapshot, so it shows exactly one commit
//! while writers go on, and never blocks them. It is written table by table
//! into a new file (compact: no free pages, like a defragmented file), made
//! durable, and only then renamed into place, so a crash leaves either no
//! copy or a whole one, never a torn one under the final name.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use super::{Db, Durability, Options, TxnRead};
use crate::error::{Error, Result};

/// Bytes of keys and values copied per commit into the new file: bounds the
/// memory of the copy's unwritten pages, whatever the database's size.
pub(super) const BATCH_BYTES: usize = 32 << 20;

/// What [`Db::save_snapshot`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotReport {
    /// The commit the copy shows.
    pub txid: u64,
    /// Tables copied.
    pub tables: usize,
    /// Entries copied, all tables together.
    pub entries: u64,
    /// The copy's size in bytes.
    pub file_size: u64,
}

impl Db {
    /// Writes a consistent copy of the last commit to `path`, while this
    /// handle stays in use by readers and writers. The copy has the same
    /// page size and tables, and no free pages. It is written to
    /// `path` + `.part`, synced, then renamed over `path` and the directory
    /// synced: when this returns the copy is durable, and a crash before
    /// that never leaves a partial file at `path`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use revkv::{Db, TxnRead};
    /// let db = Db::open(dir.path().join("live.db"))?;
    /// let mut w = db.begin_write()?;
    /// let t = w.open_table("config")?;
    /// w.insert(t, b"replicas", b"3")?;
    /// w.commit()?;
    ///
    /// let report = db.save_snapshot(dir.path().join("backup.db"))?;
    /// assert_eq!(report.entries, 1);
    /// let copy = Db::open(dir.path().join("backup.db"))?;
    /// let r = copy.begin_read()?;
    /// assert_eq!(r.get(r.open_table("config")?, b"replicas")?, Some(&b"3"[..]));
    /// # Ok::<(), revkv::Error>(())
    /// ```
    pub fn save_snapshot(&self, path: impl AsRef<Path>) -> Result<SnapshotReport> {
        let path = path.as_ref();
        if path == self.path() || same_file(path, self.path()) {
            // Renaming the copy over the live file would leave this handle
            // committing to an unlinked file: every later commit lost.
            return Err(Error::InvalidOption(format!(
                "cannot save a snapshot over the database itself ({})",
                path.display()
            )));
        }
        let part = part_path(path);
        if part == self.path() || same_file(&part, self.path()) {
            return Err(Error::InvalidOption(format!(
                "the snapshot's temporary file {} is the database itself",
                part.display()
            )));
        }
        match std::fs::remove_file(&part) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", part.display()), e)),
        }
        let r = self.begin_read()?;
        let copy = Options::new()
            .page_size(self.shared.limits.page_size as u32)
            .durability(Durability::None)
            .open(&part)?;
        let mut report = SnapshotReport {
            txid: r.txid(),
            tables: 0,
            entries: 0,
            file_size: 0,
        };
        for name in r.table_names()? {
            let from = r.open_table(&name)?;
            let mut w = copy.begin_write()?;
            let mut to = w.open_table(&name)?;
            let mut batch = 0;
            for entry in r.range(from, Bound::Unbounded, Bound::Unbounded)? {
                let (k, v) = entry?;
                w.insert(to, k, v)?;
                report.entries += 1;
                batch += k.len() + v.len();
                if batch >= BATCH_BYTES {
                    w.commit()?;
                    w = copy.begin_write()?;
                    to = w.open_table(&name)?;
                    batch = 0;
                }
            }
            w.commit()?;
            report.tables += 1;
        }
        drop(r);
        copy.sync()?;
        report.file_size = copy.stats().file_size;
        drop(copy);
        std::fs::rename(&part, path).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", part.display(), path.display()),
                e,
            )
        })?;
        sync_parent(path)?;
        Ok(report)
    }
}

/// Whether two paths name one file (through links or different spellings).
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

pub(super) fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Makes the rename durable: the directory entry lives in the parent.
pub(super) fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", parent.display()), e))
}

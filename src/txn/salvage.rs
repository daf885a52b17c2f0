//! Salvage: every entry of a damaged file that can still be read, copied
//! into a new file, with an account of what could not be.
//!
//! Open refuses a file whose newest durable commit is damaged (falling back
//! would silently drop acknowledged commits), and a read that reaches a
//! damaged page fails. Both are right for a database in service and no help
//! to an operator with a file on a failing disk. Salvage opens the file
//! read-only from a meta page with a valid checksum, whatever that commit's
//! state, and walks every table: a page that fails its checks
//! (position, header, the checksum its parent recorded, its own checksum,
//! layout, key order) is skipped with the subtree below it and reported
//! with the range of keys its parent gave it. Everything else is copied,
//! in key order, into a new file written as `to` + `.part`, synced, and
//! linked into place (a link, unlike a rename, never replaces a file that
//! appeared at `to` meanwhile); the damaged file is never written, and a
//! salvage that fails removes its file.
//!
//! A salvaged file is a healthy database holding a subset of the damaged
//! one's entries: each copied entry is byte for byte what the newest
//! readable commit held. What the subset means to a layer above (the
//! revision store's log and its versions must agree) is that layer's to
//! restore (see `mvcc::Store::salvage`).

use std::path::{Path, PathBuf};

use super::backup::{part_path, same_file, sync_parent, BATCH_BYTES};
use super::check::Seen;
use super::read::ReadTxn;
use super::table::{check_table_name, TableRecord};
use super::{Db, Durability, Options, Table, WriteTxn};
use crate::btree::node::ValueRef;
use crate::btree::{Root, MAX_DEPTH};
use crate::error::{Error, PageId, Result};
use crate::storage::page::{check_header, span_for, verify_checksum, PageKind, PageRef};

/// A part of a table that salvage could not read: one page and the subtree
/// below it, or one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LostPart {
    /// The table, or `"the catalog"` for the table of tables.
    pub table: String,
    /// The page that failed (for an entry, the first page of its value).
    pub page: PageId,
    /// The lowest key the part could hold, as far as the pages above it
    /// tell (`None`: from the table's first key).
    pub from: Option<Vec<u8>>,
    /// The key the part ends before (`None`: to the table's end). For one
    /// lost entry, `from` is its key and `to` the key right after it.
    pub to: Option<Vec<u8>>,
    /// What was wrong, in the words of the error a read would have failed
    /// with.
    pub reason: String,
}

/// What [`Db::salvage`] copied and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageReport {
    /// The commit salvaged: of those whose meta page is intact, the one
    /// from which the most entries could be read.
    pub txid: u64,
    /// Each table copied, with the entries copied into it.
    pub tables: Vec<(String, u64)>,
    /// What could not be read, in the order the walk met it.
    pub lost: Vec<LostPart>,
    /// Why open would have refused the file or fallen back to an older
    /// commit (a damaged meta page, an unverifiable last commit); empty for
    /// a file open accepts.
    pub rejected: Vec<String>,
    /// The new file's size in bytes.
    pub file_size: u64,
}

impl SalvageReport {
    /// Entries copied, all tables together.
    pub fn entries(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// What a layer above salvage decides for each readable entry.
pub(crate) enum Verdict {
    /// Copy it.
    Copy,
    /// Leave it out: the layer rebuilds it from the others.
    Skip,
    /// Leave it out and report it lost, for this reason.
    Lost(String),
}

/// The caller's verdict on each entry: table name, key, value, given the
/// new file as far as it is written (tables are copied one after another,
/// in name order, each committed before the next begins).
pub(crate) type Sieve<'s> = dyn FnMut(&Db, &str, &[u8], &[u8]) -> Result<Verdict> + 's;

/// A salvaged file not yet in place: the layer above may still add to it.
/// Dropped unfinished (a failure on the way), its file is removed.
pub(crate) struct Salvaged {
    pub db: Db,
    pub report: SalvageReport,
    /// The file being written; taken once it has its final name.
    part: Option<PathBuf>,
    to: PathBuf,
}

impl Salvaged {
    /// Syncs the new file and gives it its final name, which must still be
    /// free: linked, not renamed, so that a file created there meanwhile
    /// is never replaced.
    pub fn finish(mut self) -> Result<SalvageReport> {
        self.db.sync()?;
        self.report.file_size = self.db.stats().file_size;
        let part = self.part.as_deref().expect("finished once");
        let to = &self.to;
        std::fs::hard_link(part, to).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::InvalidOption(format!(
                    "the salvage's destination {} exists: salvage never replaces a file",
                    to.display()
                ))
            } else {
                Error::io(format!("linking {} to {}", part.display(), to.display()), e)
            }
        })?;
        let part = self.part.take().expect("finished once");
        std::fs::remove_file(&part)
            .map_err(|e| Error::io(format!("removing {}", part.display()), e))?;
        sync_parent(to)?;
        Ok(std::mem::take(&mut self.report))
    }
}

impl Drop for Salvaged {
    fn drop(&mut self) {
        if let Some(part) = self.part.take() {
            let _ = std::fs::remove_file(part);
        }
    }
}

impl Db {
    /// Copies every entry of the database file `from` that can still be
    /// read into a new file `to`, and reports what could not be: for an
    /// operator whose file open refuses, or whose reads fail with
    /// [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt).
    ///
    /// `from` is opened read-only (it must not be open for writing
    /// elsewhere), from whichever of the two commits its intact meta pages
    /// name yields more entries (the newer on a tie), and never written.
    /// A page that fails any check is skipped with the subtree below it;
    /// everything else is copied, in key order, into `to` + `.part`, which
    /// is synced and linked to `to` (the temporary name then removed). `to`
    /// must not exist: salvage never replaces a file, and one that fails
    /// leaves no file behind. It fails only when `from` has no intact meta
    /// page or the new file cannot be written.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use revkv::{Db, TxnRead};
    /// let db = Db::open(dir.path().join("old.db"))?;
    /// let mut w = db.begin_write()?;
    /// let t = w.open_table("config")?;
    /// w.insert(t, b"replicas", b"3")?;
    /// w.commit()?;
    /// drop(db);
    ///
    /// let report = Db::salvage(dir.path().join("old.db"), dir.path().join("new.db"))?;
    /// assert!(report.lost.is_empty());
    /// assert_eq!(report.entries(), 1);
    /// let db = Db::open(dir.path().join("new.db"))?;
    /// let r = db.begin_read()?;
    /// assert_eq!(r.get(r.open_table("config")?, b"replicas")?, Some(&b"3"[..]));
    /// # Ok::<(), revkv::Error>(())
    /// ```
    pub fn salvage(from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<SalvageReport> {
        salvage_into(from.as_ref(), to.as_ref(), &mut |_, _, _, _| {
            Ok(Verdict::Copy)
        })?
        .finish()
    }
}

/// Copies what `sieve` lets through of every readable entry of `from` into
/// `to` + `.part`, left open for the caller to finish.
pub(crate) fn salvage_into(from: &Path, to: &Path, sieve: &mut Sieve<'_>) -> Result<Salvaged> {
    if to.exists() || same_file(from, to) {
        return Err(Error::InvalidOption(format!(
            "the salvage's destination {} exists: salvage never replaces a file",
            to.display()
        )));
    }
    let part = part_path(to);
    if same_file(from, &part) {
        return Err(Error::InvalidOption(format!(
            "the salvage's temporary file {} is the damaged file itself",
            part.display()
        )));
    }
    let damaged = choose_commit(from)?;
    let r = damaged.begin_read()?;
    match std::fs::remove_file(&part) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", part.display()), e)),
    }
    let copy = Options::new()
        .page_size(r.mapped().limits.page_size as u32)
        .durability(Durability::None)
        .open(&part)?;
    let mut salvaged = Salvaged {
        db: copy,
        report: SalvageReport {
            txid: r.txid(),
            tables: Vec::new(),
            lost: Vec::new(),
            rejected: damaged
                .recovery()
                .map(|rec| rec.rejected.clone())
                .unwrap_or_default(),
            file_size: 0,
        },
        part: Some(part),
        to: to.to_path_buf(),
    };
    let (copy, report) = (&salvaged.db, &mut salvaged.report);
    // Pages beyond the file cannot be read whatever the meta claims: the
    // marks cover the file only.
    let pages = r.hwm().min(r.mapped().file_pages);
    let mut seen = Seen::new(pages);
    let _ = seen.mark(0, 2.min(pages), "the meta pages");
    let mut records = Vec::new();
    walk(
        &r,
        &mut seen,
        r.catalog(),
        CATALOG,
        &mut report.lost,
        &mut |key, value| {
            let name = std::str::from_utf8(key)
                .map_err(|_| "a table name that is not UTF-8".to_string())
                .and_then(|n| check_table_name(n).map(|()| n).map_err(|e| e.to_string()));
            match name.and_then(|n| {
                TableRecord::decode(value, key)
                    .map(|rec| (n.to_string(), rec))
                    .map_err(|e| e.to_string())
            }) {
                Ok(named) => records.push(named),
                Err(reason) => return Ok(Some(reason)),
            }
            Ok(None)
        },
    )?;
    for (name, rec) in records {
        let mut out = Output::begin(copy, &name)?;
        walk(
            &r,
            &mut seen,
            rec.root,
            &name,
            &mut report.lost,
            &mut |key, value| match sieve(copy, &name, key, value)? {
                Verdict::Copy => out.insert(key, value).map(|()| None),
                Verdict::Skip => Ok(None),
                Verdict::Lost(reason) => Ok(Some(reason)),
            },
        )?;
        report.tables.push((name, out.finish()?));
    }
    Ok(salvaged)
}

const CATALOG: &str = "the catalog";

/// Opens `from` at the commit to salvage: of the (at most two) commits
/// whose meta pages are intact, the one from which the most entries can be
/// read, the newer on a tie. Damage that takes a tree's root (or the
/// catalog's) loses everything below it in one commit, while the commit
/// before, which copied that page on write, may still have its own.
fn choose_commit(from: &Path) -> Result<Db> {
    let open = |n: usize| {
        let mut opts = Options::new().read_only(true);
        opts.salvage = Some(n);
        opts.open(from)
    };
    let newest = open(0)?;
    let Ok(older) = open(1) else {
        return Ok(newest);
    };
    if readable_entries(&older)? > readable_entries(&newest)? {
        Ok(older)
    } else {
        Ok(newest)
    }
}

/// How many entries of the last commit of `db` a salvage could read.
fn readable_entries(db: &Db) -> Result<u64> {
    let r = db.begin_read()?;
    let mut seen = Seen::new(r.hwm().min(r.mapped().file_pages));
    let mut lost = Vec::new();
    let mut roots = Vec::new();
    walk(
        &r,
        &mut seen,
        r.catalog(),
        CATALOG,
        &mut lost,
        &mut |key, value| {
            Ok(match TableRecord::decode(value, key) {
                Ok(rec) => {
                    roots.push(rec.root);
                    None
                }
                Err(e) => Some(e.to_string()),
            })
        },
    )?;
    let mut entries = 0u64;
    for root in roots {
        walk(&r, &mut seen, root, "", &mut lost, &mut |_, _| {
            entries += 1;
            Ok(None)
        })?;
    }
    Ok(entries)
}

/// One table of the new file, written in batches of [`BATCH_BYTES`].
struct Output<'d> {
    db: &'d Db,
    name: String,
    w: Option<(WriteTxn, Table)>,
    batch: usize,
    entries: u64,
}

impl<'d> Output<'d> {
    fn begin(db: &'d Db, name: &str) -> Result<Output<'d>> {
        let mut out = Output {
            db,
            name: name.to_string(),
            w: None,
            batch: 0,
            entries: 0,
        };
        // The table exists in the new file even if nothing of it is read.
        out.txn()?;
        Ok(out)
    }

    fn txn(&mut self) -> Result<&mut (WriteTxn, Table)> {
        if self.w.is_none() {
            let mut w = self.db.begin_write()?;
            let table = w.open_table(&self.name)?;
            self.w = Some((w, table));
        }
        Ok(self.w.as_mut().expect("just begun"))
    }

    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (w, table) = self.txn()?;
        w.insert(*table, key, value)?;
        self.entries += 1;
        self.batch += key.len() + value.len();
        if self.batch >= BATCH_BYTES {
            if let Some((w, _)) = self.w.take() {
                w.commit()?;
            }
            self.batch = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        self.txn()?;
        if let Some((w, _)) = self.w.take() {
            w.commit()?;
        }
        Ok(self.entries)
    }
}

/// What a walk calls for each readable entry: `Some(reason)` reports the
/// entry lost; an error ends the salvage (the new file failed).
type VisitEntry<'v> = dyn FnMut(&[u8], &[u8]) -> Result<Option<String>> + 'v;

/// A page still to read, with the keys its parent gave it: lower bound
/// inclusive, upper exclusive.
struct Pending {
    at: PageRef,
    depth: usize,
    from: Option<Vec<u8>>,
    to: Option<Vec<u8>>,
}

/// Walks one tree depth-first in key order, skipping (and reporting) every
/// page that fails a check, with its subtree.
fn walk(
    r: &ReadTxn,
    seen: &mut Seen,
    root: Root,
    table: &str,
    lost: &mut Vec<LostPart>,
    visit: &mut VisitEntry<'_>,
) -> Result<()> {
    if root.is_none() {
        return Ok(());
    }
    let pages = r.mapped();
    let shared = r.shared();
    let mut last_key: Option<Vec<u8>> = None;
    let mut stack = vec![Pending {
        at: root,
        depth: 0,
        from: None,
        to: None,
    }];
    while let Some(p) = stack.pop() {
        let mut lose = |reason: String| {
            lost.push(LostPart {
                table: table.to_string(),
                page: p.at.id,
                from: p.from.clone(),
                to: p.to.clone(),
                reason,
            })
        };
        if p.depth >= MAX_DEPTH {
            lose(format!("deeper than {MAX_DEPTH} levels"));
            continue;
        }
        if let Err(e) = seen.mark(p.at.id, 1, table) {
            lose(e.to_string());
            continue;
        }
        let n = match pages.node(p.at, &shared.verified, &shared.unwritten) {
            Ok(n) => n,
            Err(e) => {
                lose(e.to_string());
                continue;
            }
        };
        let kind = if n.is_leaf() {
            PageKind::Leaf
        } else {
            PageKind::Branch
        };
        if let Err(e) = check_header(n.bytes(), p.at, kind) {
            lose(e.to_string());
            continue;
        }
        let first_real = usize::from(!n.is_leaf());
        let outside = (first_real..n.count()).find(|&i| {
            let k = n.key(i);
            p.from.as_deref().is_some_and(|lo| k < lo) || p.to.as_deref().is_some_and(|hi| k >= hi)
        });
        if let Some(i) = outside {
            lose(format!("key {i} lies outside its parent's separators"));
            continue;
        }
        if !n.is_leaf() {
            // Right to left, so children are read in key order.
            for i in (0..n.count()).rev() {
                stack.push(Pending {
                    at: n.child(i),
                    depth: p.depth + 1,
                    from: if i == 0 {
                        p.from.clone()
                    } else {
                        Some(n.key(i).to_vec())
                    },
                    to: if i + 1 == n.count() {
                        p.to.clone()
                    } else {
                        Some(n.key(i + 1).to_vec())
                    },
                });
            }
            continue;
        }
        for i in 0..n.count() {
            let key = n.key(i);
            let mut lose_entry = |page: PageId, reason: String| {
                let mut to = key.to_vec();
                to.push(0);
                lost.push(LostPart {
                    table: table.to_string(),
                    page,
                    from: Some(key.to_vec()),
                    to: Some(to),
                    reason,
                })
            };
            // Subtrees that overlap (a damaged branch pointing twice into
            // one range) would copy a key twice or out of order.
            if last_key.as_deref().is_some_and(|last| key <= last) {
                lose_entry(p.at.id, "keys out of order across pages".into());
                continue;
            }
            let value = match n.value(i) {
                ValueRef::Inline(v) => v,
                ValueRef::Overflow { page, len } => {
                    match overflow(r, seen, page, len as usize, table) {
                        Ok(v) => v,
                        Err(e) => {
                            lose_entry(page.id, e.to_string());
                            continue;
                        }
                    }
                }
            };
            if let Some(reason) = visit(key, value)? {
                lose_entry(p.at.id, reason);
                continue;
            }
            last_key = Some(key.to_vec());
        }
    }
    Ok(())
}

/// The value of an overflow run, every page of it checked.
fn overflow<'r>(
    r: &'r ReadTxn,
    seen: &mut Seen,
    page: PageRef,
    len: usize,
    table: &str,
) -> Result<&'r [u8]> {
    let pages = r.mapped();
    let ps = pages.limits.page_size;
    let span = span_for(len, ps) as u64;
    seen.mark(page.id, span, table)?;
    let v = pages.overflow(
        page,
        len as u32,
        &r.shared().verified,
        &r.shared().unwritten,
    )?;
    // The run as a whole, whatever this handle verified before.
    verify_checksum(
        pages
            .mapping
            .bytes(page.id as usize * ps, span as usize * ps),
        page.id,
    )?;
    Ok(v)
}

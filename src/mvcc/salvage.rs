//! Salvage of a damaged revision store: the storage layer's salvage
//! (`Db::salvage`), then the store's own invariants restored on the copy.
//!
//! The `kv` table is the store's data: every version's key, revision and
//! record. The revision log (`rev`) only indexes it (each entry names the
//! key of one version, and every version has exactly one entry), so it is
//! not copied but rebuilt from the `kv` entries salvaged: a log entry whose
//! version was lost would fail every read of its revision, and a version
//! whose log entry was lost would be skipped by compaction and by
//! watchers. The `meta` table's revisions are copied when readable; the
//! current revision is raised to the newest version found, so the next
//! write never reuses a revision.

use std::ops::Bound;
use std::path::Path;

use super::keys::{self, split_kv_key, split_rev_key};
use super::record::Record;
use super::{
    read_u64, tables, Store, KV, META, META_COMPACTED, META_CURRENT, META_PROGRESS, META_SCHEDULED,
    REV,
};
use crate::error::{Error, Result};
use crate::quota::{Alarm, ALARM_TABLE};
use crate::txn::salvage::{salvage_into, Verdict};
use crate::txn::{Db, LostPart, ReadTxn, SalvageReport, Table, TxnRead};

/// Most lost versions listed by key and revision: a report, not a copy of
/// a damaged log.
const MAX_LOST_VERSIONS: usize = 100_000;

/// The `meta` table's revisions, each a big-endian u64.
const REVISION_KEYS: [&[u8]; 4] = [META_CURRENT, META_COMPACTED, META_SCHEDULED, META_PROGRESS];

/// Versions re-indexed per commit while the log is rebuilt: bounds the
/// memory of the copy's unwritten pages.
const REINDEX_BATCH: u64 = 100_000;

/// What [`Store::salvage`] recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreSalvageReport {
    /// The storage layer's account: tables, entries copied, parts lost.
    /// Lost `kv` entries and pages are versions lost; the `rev` table is
    /// rebuilt, so its losses cost nothing.
    pub storage: SalvageReport,
    /// Versions in the salvaged store, each with its log entry.
    pub versions: u64,
    /// The salvaged store's current revision.
    pub revision: i64,
    /// The salvaged store's compacted revision.
    pub compacted_revision: i64,
    /// The versions the damaged file's revision log names but whose
    /// records were lost: key and revision, in revision order (at most
    /// the first 100,000). Versions whose log entries were lost too are
    /// covered only by `storage.lost`.
    pub lost_versions: Vec<(Vec<u8>, i64)>,
    /// What had to be assumed (a lost current or compacted revision).
    pub notes: Vec<String>,
}

impl Store {
    /// Recovers what can still be read of a damaged store file `from` into
    /// a new store file `to`: every readable version, with its revision
    /// log rebuilt and the current revision at least the newest version
    /// found. `from` is opened read-only and never written; `to` must not
    /// exist. See [`Db::salvage`](crate::Db::salvage) for what is skipped
    /// and how the new file is made durable.
    ///
    /// Versions on damaged pages are gone: a key may then read as an older
    /// version, or as absent. The report's `storage.lost` lists each part
    /// lost with the range of keys it held (`kv` table keys: the escaped key
    /// followed by the inverted revision).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use revkv::mvcc::{RangeOptions, Store, StoreOptions};
    /// let store = Store::open(dir.path().join("old.db"), StoreOptions::new())?;
    /// store.put(b"/config/replicas", b"3")?;
    /// drop(store);
    ///
    /// let report = Store::salvage(dir.path().join("old.db"), dir.path().join("new.db"))?;
    /// assert!(report.storage.lost.is_empty());
    /// assert_eq!((report.versions, report.revision), (1, 2));
    /// let store = Store::open(dir.path().join("new.db"), StoreOptions::new())?;
    /// let r = store.range(b"/config/replicas", b"", &RangeOptions::default())?;
    /// assert_eq!(r.kvs[0].value, b"3");
    /// # Ok::<(), revkv::Error>(())
    /// ```
    pub fn salvage(from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<StoreSalvageReport> {
        // The `kv` table is copied before `rev` (name order): each log
        // entry whose version did not make it names a version lost.
        let mut lost_versions = Vec::new();
        let mut copied: Option<(ReadTxn, Option<Table>)> = None;
        let mut sieve = |copy: &Db, table: &str, key: &[u8], value: &[u8]| -> Result<Verdict> {
            Ok(match table {
                REV => {
                    if copied.is_none() {
                        let r = copy.begin_read()?;
                        let kv = r.open_table(KV).ok();
                        copied = Some((r, kv));
                    }
                    let (r, kv) = copied.as_ref().expect("just read");
                    if let (Some((main, _)), Some(user)) = (split_rev_key(key), value.get(1..)) {
                        // A key no version could have (empty, too long)
                        // names nothing.
                        let lost = match kv {
                            Some(kv) => matches!(r.get(*kv, &keys::kv_key(user, main)), Ok(None)),
                            None => true,
                        };
                        if lost && !user.is_empty() && lost_versions.len() < MAX_LOST_VERSIONS {
                            lost_versions.push((user.to_vec(), main as i64));
                        }
                    }
                    Verdict::Skip
                }
                KV => match check_version(key, value) {
                    Ok(()) => Verdict::Copy,
                    Err(e) => Verdict::Lost(e.to_string()),
                },
                // Open reads these: a malformed one would leave the copy
                // unopenable.
                META if REVISION_KEYS.contains(&key) && value.len() != 8 => Verdict::Lost(format!(
                    "meta key {:?} is malformed",
                    String::from_utf8_lossy(key)
                )),
                ALARM_TABLE if Alarm::from_name(key).is_none() || value.len() != 8 => {
                    Verdict::Lost(format!(
                        "alarm {:?} is unknown or malformed",
                        String::from_utf8_lossy(key)
                    ))
                }
                _ => Verdict::Copy,
            })
        };
        let mut salvaged = salvage_into(from.as_ref(), to.as_ref(), &mut sieve)?;
        drop(copied);
        let db = &salvaged.db;
        let mut notes = Vec::new();
        // The log, rebuilt from the versions in batches.
        let r = db.begin_read()?;
        let mut versions = 0u64;
        let mut newest = 1u64;
        let mut log = Vec::new();
        let mut w = db.begin_write()?;
        let mut t = tables(&mut w)?;
        if let Ok(kv) = r.open_table(KV) {
            for entry in r.range(kv, Bound::Unbounded, Bound::Unbounded)? {
                let (k, v) = entry?;
                let (esc, main) = split_kv_key(k).expect("checked by the sieve");
                let rec = Record::decode(v)?;
                log.clear();
                log.push(u8::from(rec.tombstone));
                keys::unescape_into(esc, &mut log);
                let at = keys::rev_key(main, rec.sub);
                if w.get(t.rev, &at)?.is_some() {
                    // Two versions claim one revision: a damaged page
                    // that still checks out. The first keeps it.
                    w.remove(t.kv, k)?;
                    let mut to = k.to_vec();
                    to.push(0);
                    salvaged.report.lost.push(LostPart {
                        table: KV.into(),
                        page: 0,
                        from: Some(k.to_vec()),
                        to: Some(to),
                        reason: format!("revision {main}.{} is another key's too", rec.sub),
                    });
                    continue;
                }
                w.insert(t.rev, &at, &log)?;
                versions += 1;
                newest = newest.max(main);
                if versions.is_multiple_of(REINDEX_BATCH) {
                    w.commit()?;
                    w = db.begin_write()?;
                    t = tables(&mut w)?;
                }
            }
        }
        drop(r);
        let stored = |key: &[u8], w: &crate::txn::WriteTxn| read_u64(w, t.meta, key).ok().flatten();
        let current = match stored(META_CURRENT, &w) {
            Some(c) => c.max(newest),
            None => {
                notes.push(format!(
                    "the current revision was lost: set to the newest version's, {newest}"
                ));
                newest
            }
        };
        let compacted = match stored(META_COMPACTED, &w) {
            Some(c) if c <= current => c,
            Some(c) => {
                notes.push(format!(
                    "the compacted revision {c} was above the current one: set to {current}"
                ));
                current
            }
            None => {
                if w.get(t.meta, META_COMPACTED)?.is_some() {
                    notes.push("the compacted revision was malformed: set to 0".into());
                }
                0
            }
        };
        if salvaged.report.lost.iter().any(|l| l.table == META) {
            notes.push(format!(
                "parts of the meta table were lost: a compaction may have gone further than revision {compacted}, and reads below it may miss versions instead of failing"
            ));
        }
        if let Some(target) = stored(META_SCHEDULED, &w).filter(|&s| s > current) {
            // A compaction to a revision the store never reached cannot
            // have been asked for: not resumed.
            notes.push(format!(
                "a compaction scheduled to revision {target}, above the current one, was dropped"
            ));
            w.remove(t.meta, META_SCHEDULED)?;
        }
        w.insert(t.meta, META_CURRENT, &current.to_be_bytes())?;
        w.insert(t.meta, META_COMPACTED, &compacted.to_be_bytes())?;
        w.commit()?;
        let storage = salvaged.finish()?;
        Ok(StoreSalvageReport {
            storage,
            versions,
            revision: current as i64,
            compacted_revision: compacted as i64,
            lost_versions,
            notes,
        })
    }
}

/// Whether a `kv` entry is a well-formed version.
fn check_version(key: &[u8], value: &[u8]) -> Result<()> {
    let (esc, main) =
        split_kv_key(key).ok_or_else(|| Error::CorruptFile("malformed kv table key".into()))?;
    let mut user = Vec::new();
    if !keys::unescape_into(esc, &mut user) || user.is_empty() {
        return Err(Error::CorruptFile("malformed escaped key".into()));
    }
    if main < 2 {
        return Err(Error::CorruptFile(format!(
            "version at revision {main}, before the first write"
        )));
    }
    Record::decode(value).map(|_| ())
}

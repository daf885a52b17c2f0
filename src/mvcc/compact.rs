//! Compaction: forgetting history below a revision.
//!
//! The logical step is one small transaction: it records the new compacted
//! revision (reads below it fail from then on) and schedules the physical
//! removal. The physical step walks the revision log from the last
//! compaction up to the target in batches, each its own write transaction,
//! so writers and readers interleave with it. For every version in the log
//! it removes the older versions of the same key (superseded by this one)
//! and, when this version is a deletion and the newest at or below the
//! target, the deletion itself. Progress is saved with every batch; open
//! finishes a compaction a crash interrupted.
//!
//! Compaction gives way to foreground writes (see `txn::writer_lock`): a
//! batch ends early, after the revision in hand and at least
//! [`MIN_SLICE`] of work, when a foreground writer waits for the writer
//! lock, and a foreground writer that ends hands the lock back to the
//! waiting batch. Between batches compaction paces itself to the disk
//! (`Db::pace_background`): a batch dirties pages far faster than the disk
//! takes them, and left alone it would pile them up for a sync's commit to
//! write under the writer lock, where every writer waits.

use std::time::{Duration, Instant};

use super::keys::{self, split_kv_key, split_rev_key};
use super::read;
use super::record::Record;
use super::Tables;
use crate::error::{Error, Result};
use crate::txn::{TxnRead, WriteTxn};

/// Log entries one batch visits (more when one revision has more changes:
/// a revision is never split between batches).
pub const BATCH: usize = 50;

/// The least work a batch does before it ends early for a waiting writer:
/// without it a busy foreground would let compaction remove one revision
/// per batch, and the per-batch costs (a commit each) would starve it.
pub const MIN_SLICE: Duration = Duration::from_micros(200);

/// Runs one batch of the physical compaction toward `target`, starting after
/// revision `progress`: `budget` log entries, fewer when a foreground writer
/// starts waiting (at least one revision). Returns the new progress and
/// whether it is done.
pub(crate) fn batch(
    w: &mut WriteTxn,
    t: Tables,
    progress: u64,
    target: u64,
    budget: usize,
    began: Instant,
) -> Result<(u64, bool)> {
    // Collect the log entries first: removal changes the tables.
    let mut entries: Vec<(u64, u32, bool, Vec<u8>)> = Vec::new();
    let mut done = true;
    {
        let mut c = w.cursor(t.rev)?;
        let mut e = c.seek(&keys::rev_key(progress + 1, 0))?;
        while let Some((k, v)) = e {
            let (main, sub) = split_rev_key(k)
                .ok_or_else(|| Error::CorruptFile("malformed rev table key".into()))?;
            if main > target {
                break;
            }
            if entries.len() >= budget && entries.last().is_some_and(|l| l.0 != main) {
                done = false;
                break;
            }
            let (flag, key) = v
                .split_first()
                .ok_or_else(|| Error::CorruptFile("empty rev table entry".into()))?;
            entries.push((main, sub, *flag == 1, key.to_vec()));
            e = c.next()?;
        }
    }
    let mut last = progress;
    for (main, sub, tombstone, key) in entries {
        // A revision is never split: stop between two, once one is done,
        // if a foreground writer waits.
        if main != last && last != progress && w.writer_waiting() && began.elapsed() >= MIN_SLICE {
            return Ok((last, false));
        }
        remove_older(w, t, &key, main)?;
        if tombstone {
            if let Some((rev, _)) = read::version_at(&*w, t.kv, &key, target)? {
                if rev == main {
                    w.remove(t.kv, &keys::kv_key(&key, main))?;
                    w.remove(t.rev, &keys::rev_key(main, sub))?;
                }
            }
        }
        last = main;
    }
    Ok((if done { target } else { last }, done))
}

/// Removes every version of `key` older than `main`, from both tables.
fn remove_older(w: &mut WriteTxn, t: Tables, key: &[u8], main: u64) -> Result<()> {
    loop {
        let older = {
            let Some((rev, rec)) = read::version_at(&*w, t.kv, key, main - 1)? else {
                return Ok(());
            };
            (rev, rec.sub)
        };
        w.remove(t.kv, &keys::kv_key(key, older.0))?;
        w.remove(t.rev, &keys::rev_key(older.0, older.1))?;
    }
}

/// A stable hash of the history up to `rev` (etcd's HashKV): every
/// version still stored at or below `rev`, in revision order.
pub(crate) fn hash_kv<T: TxnRead + ?Sized>(r: &T, t: Tables, rev: u64) -> Result<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut c = r.cursor(t.rev)?;
    let mut e = c.first()?;
    while let Some((k, v)) = e {
        let (main, sub) =
            split_rev_key(k).ok_or_else(|| Error::CorruptFile("malformed rev table key".into()))?;
        if main > rev {
            break;
        }
        let key = v
            .get(1..)
            .ok_or_else(|| Error::CorruptFile("empty rev table entry".into()))?;
        h.update(&main.to_be_bytes());
        h.update(&sub.to_be_bytes());
        h.update(&(key.len() as u32).to_be_bytes());
        h.update(key);
        match r.get(t.kv, &keys::kv_key(key, main))? {
            Some(rec) => {
                let _ = Record::decode(rec)?;
                h.update(rec);
            }
            None => {
                return Err(Error::CorruptFile(format!(
                    "revision {main}.{sub} has no kv entry"
                )))
            }
        }
        e = c.next()?;
    }
    Ok(h.finalize())
}

/// Checks that every `kv` entry is a well-formed versioned key (for `check`).
pub(crate) fn check_tables<T: TxnRead + ?Sized>(r: &T, t: Tables) -> Result<u64> {
    let mut c = r.cursor(t.kv)?;
    let mut e = c.first()?;
    let mut n = 0;
    while let Some((k, v)) = e {
        let (esc, _) =
            split_kv_key(k).ok_or_else(|| Error::CorruptFile("malformed kv table key".into()))?;
        keys::unescape(esc).ok_or_else(|| Error::CorruptFile("malformed escaped key".into()))?;
        Record::decode(v)?;
        n += 1;
        e = c.next()?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{tables, Store, StoreOptions};

    /// Ten keys put twice: revisions 2..=21, the first ten superseded.
    fn store_with_history(dir: &std::path::Path) -> Store {
        let store = Store::open(dir.join("kv.db"), StoreOptions::new()).unwrap();
        for round in 0..2 {
            for i in 0..10 {
                store.put(format!("k{i}").as_bytes(), &[round]).unwrap();
            }
        }
        store
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn a_batch_gives_way_after_the_revision_in_hand_when_a_writer_waits() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_history(dir.path());
        let db = store.db();
        let long_ago = Instant::now().checked_sub(MIN_SLICE * 2).unwrap();

        // Nobody waits: the whole budget.
        let mut w = db.begin_write().unwrap();
        let t = tables(&mut w).unwrap();
        assert_eq!(batch(&mut w, t, 1, 21, 50, long_ago).unwrap(), (21, true));
        drop(w);

        // A writer waits and the minimum slice has passed: one revision.
        db.shared.waiting.pretend_foreground(1);
        let mut w = db.begin_write().unwrap();
        let t = tables(&mut w).unwrap();
        assert_eq!(batch(&mut w, t, 1, 21, 50, long_ago).unwrap(), (2, false));
        // Within the minimum slice it keeps going.
        assert_eq!(
            batch(&mut w, t, 2, 21, 50, Instant::now()).unwrap(),
            (21, true)
        );
        drop(w);
        db.shared.waiting.pretend_foreground(-1);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn a_batch_that_gave_way_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_history(dir.path());
        let db = store.db();
        let long_ago = Instant::now().checked_sub(MIN_SLICE * 2).unwrap();
        db.shared.waiting.pretend_foreground(1);
        let mut w = db.begin_write().unwrap();
        let t = tables(&mut w).unwrap();
        let mut progress = 1;
        let mut batches = 0;
        loop {
            let (p, done) = batch(&mut w, t, progress, 21, 50, long_ago).unwrap();
            assert!(p > progress, "a batch always makes progress");
            progress = p;
            batches += 1;
            if done {
                break;
            }
        }
        assert_eq!(batches, 20, "one revision per batch while a writer waits");
        // Only the second round's versions remain.
        for i in 0..10 {
            let key = format!("k{i}");
            let mut c = w.cursor(t.kv).unwrap();
            let mut versions = 0;
            let mut e = c.seek(&keys::kv_key(key.as_bytes(), u64::MAX)).unwrap();
            while let Some((k, _)) = e {
                let Some((esc, _)) = split_kv_key(k) else {
                    break;
                };
                if keys::unescape(esc).unwrap() != key.as_bytes() {
                    break;
                }
                versions += 1;
                e = c.next().unwrap();
            }
            assert_eq!(versions, 1, "{key}");
        }
        drop(w);
        db.shared.waiting.pretend_foreground(-1);
    }
}

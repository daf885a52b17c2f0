//! Compaction: forgetting history below a revision.
//!
//! The logical step is one small transaction: it records the new compacted
//! revision (reads below it fail from then on) and schedules the physical
//! removal. The physical step reads the revision log from the last
//! compaction up to the target, a plan of [`BATCH`] entries at a time. For
//! every key changed in a plan's entries it removes the versions older
//! than its newest change there (superseded by it) and, when that change
//! is a deletion and the newest version at or below the target, the
//! deletion itself; a plan applies its removals in key order. A key that a
//! later change at or below the target supersedes, with few versions to
//! remove, waits for that change's plan (see [`Plan::make`]). One caller
//! runs it at a time; progress is saved in the same transaction as a
//! plan's last removals. Open finishes a compaction a crash interrupted,
//! replaying the plan after the saved progress: the crash may have kept
//! some of its removals, and removing an absent version is a no-op.
//!
//! Each plan is made on a snapshot, without the writer: which versions
//! go depends only on history at or below the target, which every snapshot
//! taken after the compaction was scheduled holds and which later writes
//! never change (they add revisions above it). A plan made on a snapshot
//! that lacks removals already applied names some versions twice; removing
//! an absent version is a no-op. Only the removals themselves run in a
//! write transaction, so the writer is held for tree updates alone, a few
//! microseconds per version.
//!
//! Where the removals run depends on the commit mode:
//!
//! * batched: in the store's parked transaction (`txn::parked`), between
//!   foreground writes, giving way after the removal in hand as soon as a
//!   writer or a point reader waits for it. Nothing is committed per slice:
//!   the parked transaction commits as it does for writes (when it holds
//!   too many pages, when something needs the writer lock, at a sync);
//! * immediate: each slice its own write transaction, giving way to a
//!   waiting writer (see `txn::writer_lock`) after [`MIN_SLICE`].
//!
//! A slice also ends when its transaction holds [`SLICE_MAX_PAGES`] (in
//! batched mode the parked transaction's limit, 4096, which it then
//! commits). Between
//! slices compaction paces itself to the disk
//! (`Db::pace_background`, with its syncs made by the batched mode's
//! background syncer, see `Store::pace_compaction`): it dirties pages far
//! faster than the disk takes them, and left alone it would pile them up
//! for a sync's commit to write under the writer lock, where every writer
//! waits.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::keys::{self, split_kv_key, split_rev_key, REV_LEN};
use super::record::Record;
use super::{
    read_tables, read_u64, tables, CommitMode, ResponseHeader, Store, Tables, META_COMPACTED,
    META_PROGRESS, META_SCHEDULED,
};
use crate::error::{Error, Result};
use crate::txn::parked::PARK_MAX_PAGES;
use crate::txn::{Durability, TxnRead, WriteTxn};

/// Log entries one plan covers (more when one revision has more changes:
/// a revision is never split between plans). Large enough that a
/// compaction over many keys finds neighbours in one plan: applied in key
/// order, removals from neighbouring keys then share their leaf and the
/// branches above it, and removals of neighbouring revisions share their
/// log leaf. A plan takes about 150 bytes per entry while it is made (the
/// entries' keys and the removals found) and half that while it is applied:
/// 10 and 5 MB at this size with keys of 35 bytes.
pub const BATCH: usize = 65_536;

/// Most versions older than a plan's change to a key that the plan leaves
/// to a later plan changing the key again (see [`Plan::make`]).
const WAITING_VERSIONS: usize = 2;

/// Immediate mode: the least work a batch does before it ends early for a
/// waiting writer. Without it a busy foreground would let compaction remove
/// one revision per batch, and the per-batch costs (a durable commit each)
/// would starve it.
pub const MIN_SLICE: Duration = Duration::from_micros(200);

/// Most pages one slice's write transaction holds in immediate mode: its
/// commit is durable, and a writer waiting for the lock waits for it.
pub const SLICE_MAX_PAGES: usize = 1024;

/// One stored version to remove.
struct Removal {
    /// Its `kv` table key, in [`Plan::keys`].
    kv: Range<usize>,
    /// Its `rev` table key.
    rev: [u8; 12],
}

/// A change one of a plan's log entries records.
struct Change {
    /// The key, in the planner's key buffer.
    key: Range<usize>,
    main: u64,
    sub: u32,
    deletion: bool,
}

/// A batch of the physical compaction: the versions that the log entries
/// after `start` up to `end` remove, found on a snapshot and ordered by
/// key (see [`Plan::make`]).
pub(crate) struct Plan {
    /// The compaction target it was made for.
    target: u64,
    /// The progress once all of it is applied.
    end: u64,
    /// Whether applying all of it completes the compaction.
    done: bool,
    /// In `kv` key order (a key's versions newest first), except that a
    /// deletion comes after every version of its key.
    removals: Vec<Removal>,
    /// The removals' `kv` keys, end to end (one buffer, not one per key).
    keys: Vec<u8>,
    /// The first removal not applied yet.
    next: usize,
    /// The progress reached: the plan's start until all of it is applied,
    /// then its end. Removals are in key order, not log order, so no log
    /// entry in between is known to be finished before the last removal.
    reached: u64,
}

impl Plan {
    /// Plans the batch after `progress` toward `target`: the versions the
    /// next `budget` log entries remove (more entries when the last
    /// revision has more changes: a revision is never split). `r` must
    /// hold every revision at or below `target`.
    ///
    /// The log is in revision order, and consecutive revisions usually
    /// change keys far apart; removing in that order dirties a leaf (and
    /// the branches above it) per version. So the planner reads the
    /// entries first, keeps the newest change to each key (it removes
    /// everything the older ones would), and looks the keys up and orders
    /// the removals in `kv` key order, except that a deletion goes after
    /// the versions it hid: a commit of the parked transaction between two
    /// removals never exposes one of them. A key whose newest version at or
    /// below the target is newer than its change here, and that has at most
    /// [`WAITING_VERSIONS`] versions to remove, is left to the later plan.
    pub fn make<T: TxnRead + ?Sized>(
        r: &T,
        t: Tables,
        progress: u64,
        target: u64,
        budget: usize,
    ) -> Result<Plan> {
        let mut plan = Plan {
            target,
            end: target,
            done: true,
            removals: Vec::new(),
            keys: Vec::new(),
            next: 0,
            reached: progress,
        };
        let mut changed = Vec::new();
        let mut changes = Vec::new();
        let mut log = r.cursor(t.rev)?;
        let mut last = progress;
        let mut e = log.seek(&keys::rev_key(progress + 1, 0))?;
        while let Some((k, v)) = e {
            let (main, sub) = split_rev_key(k)
                .ok_or_else(|| Error::CorruptFile("malformed rev table key".into()))?;
            if main > target {
                break;
            }
            // The seek started past `progress`: an earlier revision here
            // (revision 0 included, which no change has) is a damaged tree.
            if main <= progress {
                return Err(Error::CorruptFile(format!(
                    "rev table entry {main}.{sub} found after revision {progress}"
                )));
            }
            if changes.len() >= budget && main != last {
                plan.end = last;
                plan.done = false;
                break;
            }
            let (&flag, key) = v
                .split_first()
                .ok_or_else(|| Error::CorruptFile("empty rev table entry".into()))?;
            let at = changed.len();
            changed.extend_from_slice(key);
            changes.push(Change {
                key: at..changed.len(),
                main,
                sub,
                deletion: flag == 1,
            });
            last = main;
            e = log.next()?;
        }
        // Key order, and for each key its newest change last.
        changes.sort_unstable_by(|a, b| {
            changed[a.key.clone()]
                .cmp(&changed[b.key.clone()])
                .then(a.main.cmp(&b.main))
        });
        // Usually one removal per change, each with its escaped key and
        // revision: reserved once rather than doubled into.
        plan.removals.reserve(changes.len());
        plan.keys
            .reserve(changed.len() + changes.len() * (REV_LEN + 2));
        let mut versions = r.cursor(t.kv)?;
        let mut probe = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let key = &changed[c.key.clone()];
            if changes
                .get(i + 1)
                .is_some_and(|n| changed[n.key.clone()] == *key)
            {
                continue;
            }
            // The key's newest version at or below the target.
            probe.clear();
            keys::escape_into(key, &mut probe);
            let esc_len = probe.len();
            probe.extend_from_slice(&(!target).to_be_bytes());
            // Keys come in ascending order: most probes land in the leaf
            // the last one ended in, or the next.
            let mut found = versions.seek_forward(&probe)?;
            let newest = match found {
                Some((vk, _)) => keys::version_of(vk, &probe[..esc_len])?,
                None => None,
            };
            // A later change at or below the target supersedes this one:
            // the plan that holds it removes everything this one would.
            let superseded = newest.is_some_and(|rev| rev > c.main);
            if newest == Some(c.main) {
                found = versions.next()?;
            } else if superseded {
                probe.truncate(esc_len);
                probe.extend_from_slice(&(!(c.main - 1)).to_be_bytes());
                found = versions.seek_forward(&probe)?;
            }
            // Every version of the key older than this change, newest first.
            let (removals, key_bytes) = (plan.removals.len(), plan.keys.len());
            while let Some((vk, vv)) = found {
                let Some(rev) = keys::version_of(vk, &probe[..esc_len])? else {
                    break;
                };
                let older = Record::decode(vv)?.sub;
                plan.push(vk, keys::rev_key(rev, older));
                found = versions.next()?;
            }
            // A key superseded later with few versions to remove waits for
            // that later plan, which rewrites its leaf anyway: a key
            // changed in several plans (a read-compare-write, then an
            // overwrite) then costs one rewrite of its leaf, not one per
            // plan. The few versions that wait bound what a key can pile
            // up, and with it the size of a plan.
            if superseded && plan.removals.len() - removals <= WAITING_VERSIONS {
                plan.removals.truncate(removals);
                plan.keys.truncate(key_bytes);
            }
            // A deletion that is the newest version at or below the target.
            if c.deletion && newest == Some(c.main) {
                probe.truncate(esc_len);
                probe.extend_from_slice(&(!c.main).to_be_bytes());
                plan.push(&probe, keys::rev_key(c.main, c.sub));
            }
        }
        Ok(plan)
    }

    fn push(&mut self, kv: &[u8], rev: [u8; 12]) {
        let at = self.keys.len();
        self.keys.extend_from_slice(kv);
        self.removals.push(Removal {
            kv: at..self.keys.len(),
            rev,
        });
    }

    /// The progress reached: the plan's start until all of it is applied,
    /// then its end (saved with the last removals, in the same
    /// transaction).
    pub fn progress(&self) -> u64 {
        self.reached
    }

    /// The compaction target it was made for.
    pub fn target(&self) -> u64 {
        self.target
    }

    /// Whether everything in it is applied.
    pub fn is_used_up(&self) -> bool {
        self.reached == self.end
    }

    /// Whether everything is applied and that completes the compaction.
    pub fn completes(&self) -> bool {
        self.done && self.is_used_up()
    }

    /// Applies removals in `w` up to the end of the plan, or until
    /// `give_way` says to stop (asked before every removal but the first,
    /// so every call applies at least one). The next call goes on from
    /// there; a crash before the plan is used up replays all of it from
    /// the saved progress, which is harmless.
    pub fn apply(
        &mut self,
        w: &mut WriteTxn,
        t: Tables,
        mut give_way: impl FnMut(&WriteTxn) -> bool,
    ) -> Result<()> {
        let first = self.next;
        while let Some(r) = self.removals.get(self.next) {
            if self.next > first && give_way(w) {
                return Ok(());
            }
            // Almost always present: absent only where a plan made on an
            // older snapshot names a version an earlier batch removed. That
            // removal changes no entry (it copies the path for nothing),
            // which costs less than looking every version up first.
            w.remove_expected(t.kv, &self.keys[r.kv.clone()])?;
            w.remove_expected(t.rev, &r.rev)?;
            self.next += 1;
        }
        self.reached = self.end;
        Ok(())
    }
}

/// What one turn of the physical compaction did.
enum CompactionStep {
    /// Nothing is scheduled, or this turn completed it.
    Done,
    /// Removals applied; the plan in hand has more.
    Applied,
    /// No plan in hand, or it is used up: make one from here.
    Replan { progress: u64, target: u64 },
}

/// One turn of the physical compaction in `w`: applies the plan in hand
/// (see [`Plan::apply`] for `give_way`) until `give_way` says so or
/// `w` holds `max_pages` pages (a plan's removals could otherwise pile up
/// a whole plan's pages in one transaction). Only one caller runs
/// compaction at a time (`Inner::compacting`), so only this caller's plans
/// move its progress, and the tables are read only between plans.
///
/// Progress is saved once per plan, not per turn: a crash (or a commit of
/// the parked transaction) in between leaves removals past the saved
/// progress, which a resumed compaction replays, and replaying a removal
/// is a no-op.
fn compaction_step(
    w: &mut WriteTxn,
    plan: &mut Option<Plan>,
    max_pages: usize,
    mut give_way: impl FnMut(&WriteTxn) -> bool,
) -> Result<CompactionStep> {
    let t = tables(w)?;
    let Some(p) = plan.as_mut().filter(|p| !p.is_used_up()) else {
        let Some(target) = read_u64(w, t.meta, META_SCHEDULED)? else {
            return Ok(CompactionStep::Done);
        };
        let progress = read_u64(w, t.meta, META_PROGRESS)?.unwrap_or(0);
        return Ok(CompactionStep::Replan { progress, target });
    };
    p.apply(w, t, |w| w.dirty_pages() >= max_pages || give_way(w))?;
    if !p.is_used_up() {
        return Ok(CompactionStep::Applied);
    }
    let progress = p.progress();
    w.insert(t.meta, META_PROGRESS, &progress.to_be_bytes())?;
    if !p.completes() {
        let target = p.target();
        return Ok(CompactionStep::Replan { progress, target });
    }
    match read_u64(w, t.meta, META_SCHEDULED)? {
        // Compacted further while this plan ran: on toward the new target.
        Some(target) if target != p.target() => Ok(CompactionStep::Replan { progress, target }),
        _ => {
            w.remove(t.meta, META_SCHEDULED)?;
            Ok(CompactionStep::Done)
        }
    }
}

impl Store {
    /// Compacts history below `revision`: from when this returns, reads
    /// below it fail with [`Error::Compacted`]. Every key keeps its newest
    /// version at or below `revision` unless that version is a deletion.
    /// The removal runs in small batches planned without the writer and
    /// applied between writes (in batched mode in the parked transaction,
    /// a few microseconds at a time), so writers and readers keep going;
    /// this call returns when it is done.
    pub fn compact(&self, revision: i64) -> Result<ResponseHeader> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let current = {
            let mut revs = self.inner.revs.lock();
            if revision <= revs.compacted as i64 {
                return Err(Error::Compacted {
                    requested: revision,
                    compacted: revs.compacted as i64,
                });
            }
            if revision > revs.current as i64 {
                return Err(Error::FutureRevision {
                    requested: revision,
                    current: revs.current as i64,
                });
            }
            let mut w = self.inner.db.begin_write()?;
            w.set_durability(Durability::Immediate);
            let t = tables(&mut w)?;
            if w.get(t.meta, META_PROGRESS)?.is_none() {
                w.insert(t.meta, META_PROGRESS, &revs.compacted.to_be_bytes())?;
            }
            w.insert(t.meta, META_COMPACTED, &(revision as u64).to_be_bytes())?;
            w.insert(t.meta, META_SCHEDULED, &(revision as u64).to_be_bytes())?;
            w.commit()?;
            revs.compacted = revision as u64;
            revs.current
        };
        self.finish_compaction()?;
        Ok(ResponseHeader {
            revision: current as i64,
        })
    }

    /// Runs the physical compaction up to the scheduled revision, if any,
    /// in batches planned on snapshots (see this module's documentation):
    /// in batched mode in the parked transaction between foreground writes,
    /// else each batch its own write transaction.
    pub(super) fn finish_compaction(&self) -> Result<()> {
        let db = &self.inner.db;
        let _alone = self.inner.compacting.lock();
        let mut plan = None;
        loop {
            let step = if let CommitMode::Batched { .. } = self.inner.opts.commit {
                db.let_parked_waiters_in();
                let mut resumed = db.resume_parked()?;
                let step = compaction_step(resumed.txn(), &mut plan, PARK_MAX_PAGES, |_| {
                    db.parked_contended()
                });
                match step {
                    Ok(step) => {
                        resumed.park(true)?;
                        step
                    }
                    // The parked transaction holds acknowledged writes and
                    // removals in an unknown state: neither can be kept.
                    Err(e) => {
                        resumed.abandon(&e);
                        return Err(e);
                    }
                }
            } else {
                let mut w = db.begin_write_yielding()?;
                let began = Instant::now();
                let step = compaction_step(&mut w, &mut plan, SLICE_MAX_PAGES, |w| {
                    w.writer_waiting() && began.elapsed() >= MIN_SLICE
                })?;
                w.commit()?;
                step
            };
            match step {
                CompactionStep::Done => return Ok(()),
                CompactionStep::Applied => self.pace_compaction()?,
                CompactionStep::Replan { progress, target } => {
                    self.pace_compaction()?;
                    // Without the writer: the plan only reads.
                    let r = db.begin_read()?;
                    let t = read_tables(&r)?;
                    let budget = self.inner.opts.compaction_batch;
                    plan = Some(Plan::make(&r, t, progress, target, budget)?);
                }
            }
        }
    }

    /// Paces compaction against the disk (see `Db::pace_background`). In
    /// batched mode with no foreground writes waiting for a sync, the sync
    /// it calls for is a round of the background syncer, so removals go on
    /// while the disk writes the ones before (the next sync due waits for
    /// that round): such a compaction spent a third of its time in syncs it
    /// made itself. While foreground writes go on, compaction syncs itself
    /// as before: a syncer round beside it and them took the writers' share
    /// of two cores (put p99 and p999 beside compaction rose in the runs of
    /// docs/benchmarks.md, fifteenth session). Where no syncer runs, or its
    /// round failed, it syncs itself too.
    fn pace_compaction(&self) -> Result<()> {
        let quiet = *self.inner.unsynced.lock() == 0;
        // One write handed: a round runs only when writes are due.
        self.inner
            .db
            .pace_background_with(|| quiet && self.hand_to_syncer(1))
    }
}

/// A stable hash of the history up to `rev` (etcd's HashKV): every
/// version at or below `rev` that compaction to `compacted` keeps, in
/// revision order. At or below `compacted` that is only the newest version
/// of each key, unless it is a deletion; the versions the physical removal
/// has not reached yet are skipped, as etcd's hash skips the revisions its
/// compaction has scheduled for removal. So the hash does not depend on how
/// far the removal has gone: two stores with the same history and
/// compacted revision agree while either is still removing.
pub(crate) fn hash_kv<T: TxnRead + ?Sized>(
    r: &T,
    t: Tables,
    rev: u64,
    compacted: u64,
) -> Result<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut log = r.cursor(t.rev)?;
    // Seeks the newest version at or below `compacted` of keys changed at
    // or below it.
    let mut kept = r.cursor(t.kv)?;
    let mut kv = Vec::new();
    let mut e = log.first()?;
    while let Some((k, v)) = e {
        let (main, sub) =
            split_rev_key(k).ok_or_else(|| Error::CorruptFile("malformed rev table key".into()))?;
        if main > rev {
            break;
        }
        let key = v
            .get(1..)
            .ok_or_else(|| Error::CorruptFile("empty rev table entry".into()))?;
        let record = if main <= compacted {
            keys::kv_key_into(key, compacted, &mut kv);
            match kept.seek(&kv)? {
                Some((found, rec))
                    if keys::version_of(found, &kv[..kv.len() - REV_LEN])? == Some(main)
                        && !Record::decode(rec)?.tombstone =>
                {
                    Some(rec)
                }
                // Superseded at or below the compacted revision, or a
                // deletion there: removed, or about to be.
                _ => None,
            }
        } else {
            keys::kv_key_into(key, main, &mut kv);
            match r.get(t.kv, &kv)? {
                Some(rec) => {
                    Record::decode(rec)?;
                    Some(rec)
                }
                None => {
                    return Err(Error::CorruptFile(format!(
                        "revision {main}.{sub} has no kv entry"
                    )))
                }
            }
        };
        if let Some(rec) = record {
            h.update(&main.to_be_bytes());
            h.update(&sub.to_be_bytes());
            h.update(&(key.len() as u32).to_be_bytes());
            h.update(key);
            h.update(rec);
        }
        e = log.next()?;
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
    use crate::mvcc::{read_tables, tables, Store, StoreOptions};

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

    /// A plan toward revision 21 after `progress`, made on the last commit.
    fn plan(store: &Store, progress: u64, budget: usize) -> Plan {
        let r = store.db().begin_read().unwrap();
        let t = read_tables(&r).unwrap();
        Plan::make(&r, t, progress, 21, budget).unwrap()
    }

    /// How many versions of each key `w` holds.
    fn versions(w: &WriteTxn, t: Tables) -> Vec<usize> {
        (0..10)
            .map(|i| {
                let key = format!("k{i}");
                let mut c = w.cursor(t.kv).unwrap();
                let mut n = 0;
                let mut e = c.seek(&keys::kv_key(key.as_bytes(), u64::MAX)).unwrap();
                while let Some((k, _)) = e {
                    let Some((esc, _)) = split_kv_key(k) else {
                        break;
                    };
                    if keys::unescape(esc).unwrap() != key.as_bytes() {
                        break;
                    }
                    n += 1;
                    e = c.next().unwrap();
                }
                n
            })
            .collect()
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn a_plan_applied_whole_leaves_only_the_newest_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_history(dir.path());
        let mut p = plan(&store, 1, 50);
        assert!(!p.is_used_up() && p.target() == 21);
        let mut w = store.db().begin_write().unwrap();
        let t = tables(&mut w).unwrap();
        let mut asked = 0;
        p.apply(&mut w, t, |_| {
            asked += 1;
            false
        })
        .unwrap();
        // Revisions 12..=21 each remove one version: asked between them.
        assert_eq!(asked, 9, "asked between every two removals");
        let mut asked = false;
        p.apply(&mut w, t, |_| {
            asked = true;
            true
        })
        .unwrap();
        assert!(!asked, "nothing left to apply");
        assert_eq!((p.progress(), p.completes()), (21, true));
        assert_eq!(versions(&w, t), [1; 10]);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn a_plan_gives_way_between_removals_and_saves_progress_only_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_history(dir.path());
        let mut p = plan(&store, 1, 50);
        let mut w = store.db().begin_write().unwrap();
        let t = tables(&mut w).unwrap();
        let mut turns = 0;
        while !p.is_used_up() {
            // Removals are in key order, not log order: no log entry is
            // known finished until the last one is applied.
            assert_eq!(p.progress(), 1, "progress stays at the plan's start");
            p.apply(&mut w, t, |_| true).unwrap();
            turns += 1;
        }
        // Revisions 12..=21 remove one version each: one per turn.
        assert_eq!(turns, 10, "one removal per turn");
        assert!(p.completes() && p.progress() == 21);
        assert_eq!(versions(&w, t), [1; 10]);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn a_plan_removes_in_key_order_and_a_deletion_after_what_it_hid() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("kv.db"), StoreOptions::new()).unwrap();
        store.put(b"b", b"1").unwrap(); // 2
        store.put(b"a", b"1").unwrap(); // 3
        store.put(b"b", b"2").unwrap(); // 4
        store.put(b"a", b"2").unwrap(); // 5
        store.put(b"b", b"3").unwrap(); // 6
        store.delete_range(b"b", b"", false).unwrap(); // 7
        store.put(b"a", b"3").unwrap(); // 8
        let r = store.db().begin_read().unwrap();
        let t = read_tables(&r).unwrap();
        let p = Plan::make(&r, t, 1, 8, 50).unwrap();
        let order = removals_of(&p);
        // Each version once, although three log entries of each key
        // name the oldest; newest first (`kv` order) but b's deletion
        // after every version it hid.
        let expected: Vec<(Vec<u8>, u64)> = [
            (b"a", 5),
            (b"a", 3),
            (b"b", 6),
            (b"b", 4),
            (b"b", 2),
            (b"b", 7),
        ]
        .into_iter()
        .map(|(k, r)| (k.to_vec(), r))
        .collect();
        assert_eq!(order, expected);
    }

    /// The versions `p` removes, as (key, revision), in its order.
    fn removals_of(p: &Plan) -> Vec<(Vec<u8>, u64)> {
        p.removals
            .iter()
            .map(|m| {
                let (esc, rev) = split_kv_key(&p.keys[m.kv.clone()]).unwrap();
                let (main, _) = split_rev_key(&m.rev).unwrap();
                assert_eq!(main, rev, "a version and its log entry go together");
                (keys::unescape(esc).unwrap(), rev)
            })
            .collect()
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn a_key_changed_again_in_a_later_plan_leaves_few_versions_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("kv.db"), StoreOptions::new()).unwrap();
        store.put(b"a", b"1").unwrap(); // 2
        store.put(b"a", b"2").unwrap(); // 3
        for v in 0..4u8 {
            store.put(b"b", &[v]).unwrap(); // 4..=7
        }
        store.put(b"a", b"3").unwrap(); // 8
        store.put(b"b", b"4").unwrap(); // 9
        let r = store.db().begin_read().unwrap();
        let t = read_tables(&r).unwrap();
        let first = Plan::make(&r, t, 1, 9, 6).unwrap();
        assert!(!first.done && first.end == 7, "the first plan covers 2..=7");
        // Both keys change again in the second plan. a has one version to
        // remove here (2): it waits. b has three (4, 5, 6): they go now,
        // so no key piles up its versions for a later plan.
        let expected: Vec<(Vec<u8>, u64)> =
            vec![(b"b".to_vec(), 6), (b"b".to_vec(), 5), (b"b".to_vec(), 4)];
        assert_eq!(removals_of(&first), expected);
        let second = Plan::make(&r, t, 7, 9, 6).unwrap();
        assert!(second.done);
        // The plan of a's newest change removes all of a's older versions;
        // on this snapshot b's versions 4..=6 are still there and named
        // again (removing an absent one is a no-op).
        let expected: Vec<(Vec<u8>, u64)> = [
            (b"a", 3),
            (b"a", 2),
            (b"b", 7),
            (b"b", 6),
            (b"b", 5),
            (b"b", 4),
        ]
        .into_iter()
        .map(|(k, r)| (k.to_vec(), r))
        .collect();
        assert_eq!(removals_of(&second), expected);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn plans_made_on_an_older_snapshot_repeat_nothing_harmful() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_history(dir.path());
        // Both planned on the same snapshot, the second after the first's
        // end: as a batched compaction plans on the last commit while its
        // earlier removals wait in the parked transaction.
        let mut first = plan(&store, 1, 15);
        assert!(!first.completes() && first.progress() == 1);
        let mut w = store.db().begin_write().unwrap();
        let t = tables(&mut w).unwrap();
        first.apply(&mut w, t, |_| false).unwrap();
        let mut second = plan(&store, first.progress(), 50);
        second.apply(&mut w, t, |_| false).unwrap();
        assert!(second.completes());
        assert_eq!(versions(&w, t), [1; 10]);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn a_deletion_goes_only_when_it_is_the_newest_version_at_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("kv.db"), StoreOptions::new()).unwrap();
        store.put(b"a", b"1").unwrap(); // 2
        store.delete_range(b"a", b"", false).unwrap(); // 3
        store.put(b"b", b"1").unwrap(); // 4
        store.delete_range(b"b", b"", false).unwrap(); // 5
        store.put(b"b", b"2").unwrap(); // 6
        let log = |target: u64| -> Vec<u64> {
            let r = store.db().begin_read().unwrap();
            let t = read_tables(&r).unwrap();
            let mut p = Plan::make(&r, t, 1, target, 50).unwrap();
            drop(r);
            let mut w = store.db().begin_write().unwrap();
            let t = tables(&mut w).unwrap();
            p.apply(&mut w, t, |_| false).unwrap();
            assert!(p.completes());
            let mut left = Vec::new();
            {
                let mut c = w.cursor(t.rev).unwrap();
                let mut e = c.first().unwrap();
                while let Some((k, _)) = e {
                    left.push(split_rev_key(k).unwrap().0);
                    e = c.next().unwrap();
                }
            }
            w.commit().unwrap();
            left
        };
        // a's deletion is its newest version at 4: it goes with the put
        // before it; b's deletion at 5 is above the target and stays.
        assert_eq!(log(4), [4, 5, 6]);
        // At 5 b's deletion is the newest: it goes, with the put it ended.
        assert_eq!(log(5), [6]);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn the_hash_does_not_depend_on_how_far_the_removal_has_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_history(dir.path());
        // A deletion that compaction to 23 removes (k0's newest version at
        // 23), and one above it (k1's, at 24) that stays.
        store.delete_range(b"k0", b"", false).unwrap(); // 22
        store.put(b"k2", b"x").unwrap(); // 23
        store.delete_range(b"k1", b"", false).unwrap(); // 24
        let r = store.db().begin_read().unwrap();
        let t = read_tables(&r).unwrap();
        let before = hash_kv(&r, t, 24, 1).unwrap();
        let mut p = Plan::make(&r, t, 1, 23, 50).unwrap();
        drop(r);
        let mut w = store.db().begin_write().unwrap();
        let t = tables(&mut w).unwrap();
        let compacted = hash_kv(&w, t, 24, 23).unwrap();
        assert_ne!(compacted, before, "compaction changes what is hashed");
        let mut turns = 0;
        while !p.is_used_up() {
            p.apply(&mut w, t, |_| true).unwrap();
            turns += 1;
            assert_eq!(
                hash_kv(&w, t, 24, 23).unwrap(),
                compacted,
                "after {turns} removals"
            );
        }
        assert!(turns > 5, "removed one version per turn ({turns} turns)");
        // Whole, the removal leaves exactly what the hash counted: hashing
        // every stored version (as if nothing were compacted) agrees.
        assert_eq!(hash_kv(&w, t, 24, 0).unwrap(), compacted);
        w.commit().unwrap();
    }
}

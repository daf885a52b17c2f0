//! Power loss at every write and sync: a workload's writes and syncs are
//! recorded, and for every point in it the file images a power failure could
//! have left are rebuilt (any subset of the writes since the last sync
//! reached the disk, one of them torn) and opened. Each must open, pass the
//! full check, and hold exactly the last acknowledged state or the one after
//! it (the commit in flight), never anything else.
//!
//! Also: faults injected into a live handle's writes and syncs.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use revkv::mvcc::{prefix_end, RangeOptions, Store, StoreOptions};
use revkv::testing::{crash_image, unsynced_writes, IoOp, RecordingIo};
use revkv::{Db, Durability, ErrorKind, Options, TxnRead};

type State = BTreeMap<(String, Vec<u8>), Vec<u8>>;

/// Mark tags: a commit acknowledged, or a sync completed, with the index of
/// the state it made durable.
const SYNCED: u64 = 1 << 40;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn contents(db: &Db) -> State {
    let r = db.begin_read().unwrap();
    let mut out = State::new();
    for name in r.table_names().unwrap() {
        let t = r.open_table(&name).unwrap();
        for e in r.range(t, Bound::Unbounded, Bound::Unbounded).unwrap() {
            let (k, v) = e.unwrap();
            out.insert((name.clone(), k.to_vec()), v.to_vec());
        }
    }
    out
}

/// Runs the core workload, returning the recorded operations and the state
/// after each acknowledged commit.
fn core_workload(
    path: &Path,
    durability: Durability,
    write_ahead: bool,
    seed: u64,
) -> (Vec<IoOp>, Vec<State>) {
    let io = Arc::new(RecordingIo::new());
    let mut opts = Options::new()
        .page_size(512)
        .durability(durability)
        .io_observer(io.clone());
    if write_ahead {
        // Every sync writes the held pages ahead, then commits.
        opts = opts.write_ahead_min_pages(1);
    }
    let db = opts.open(path).unwrap();
    let mut states = vec![State::new()];
    io.mark(0);
    io.mark(SYNCED);
    let mut rng = Rng(seed);
    let mut state = State::new();
    for k in 1..=48u64 {
        let mut w = db.begin_write().unwrap();
        let mut next = state.clone();
        for _ in 0..1 + rng.below(12) {
            let table = ["a", "b", "c"][rng.below(3) as usize];
            let t = w.open_table(table).unwrap();
            let key = format!("key{:03}", rng.below(90)).into_bytes();
            match rng.below(10) {
                0..=5 => {
                    let len = if rng.below(12) == 0 {
                        1500 + rng.below(3000)
                    } else {
                        rng.below(120)
                    } as usize;
                    let v = vec![(k as u8).wrapping_add(rng.below(7) as u8); len];
                    w.insert(t, &key, &v).unwrap();
                    next.insert((table.into(), key), v);
                }
                _ => {
                    w.remove(t, &key).unwrap();
                    next.remove(&(table.into(), key));
                }
            }
        }
        if k == 20 {
            // Tables touched but left empty exist too; make the model agree.
            w.delete_table("c").unwrap();
            next.retain(|(t, _), _| t != "c");
        }
        if k % 11 == 0 {
            drop(w); // aborted: nothing changes
            states.push(state.clone());
            io.mark(k);
            continue;
        }
        w.commit().unwrap();
        state = next;
        states.push(state.clone());
        io.mark(k);
        if durability == Durability::None && k % 6 == 0 {
            db.sync().unwrap();
            io.mark(SYNCED + k);
        }
    }
    drop(db);
    (io.ops(), states)
}

/// The acknowledged commit and the last durable state before operation
/// `upto`.
fn marks_before(ops: &[IoOp], upto: usize) -> (Option<u64>, u64) {
    let (mut acked, mut synced) = (None, 0);
    for op in &ops[..upto] {
        if let IoOp::Mark(m) = op {
            if *m >= SYNCED {
                synced = m - SYNCED;
            } else {
                acked = Some(*m);
            }
        }
    }
    (acked, synced)
}

/// Every crash image of every point of `ops`, opened with `check_state`.
fn replay(
    ops: &[IoOp],
    dir: &Path,
    seed: u64,
    mut check_state: impl FnMut(&Path, Option<u64>, u64, &str),
) -> usize {
    let mut rng = Rng(seed);
    let mut images = 0;
    for upto in 0..=ops.len() {
        if upto > 0 && matches!(ops[upto - 1], IoOp::Mark(_)) {
            continue;
        }
        let (acked, synced) = marks_before(ops, upto);
        let pending = unsynced_writes(ops, upto);
        // (which unsynced writes survive, as a bit mask; the write torn and
        // the byte it is torn at; what the image stands for)
        type Variant = (u64, Option<(usize, usize)>, String);
        let mut variants: Vec<Variant> = vec![
            (0, None, "all unsynced writes lost".into()),
            (u64::MAX, None, "all kept".into()),
        ];
        if pending > 1 {
            for _ in 0..3 {
                let keep = rng.next();
                variants.push((keep, None, format!("subset {keep:#x}")));
            }
        }
        if pending > 0 {
            let t = rng.below(pending as u64) as usize;
            let cut = rng.below(4096) as usize;
            variants.push((
                rng.next(),
                Some((t, cut)),
                format!("write {t} torn at byte {cut}"),
            ));
            variants.push((
                rng.next(),
                Some((t, 512 * (1 + rng.below(3) as usize))),
                format!("write {t} torn at a sector"),
            ));
        }
        for (keep, torn, what) in variants {
            let image = crash_image(ops, upto, keep, torn);
            let path = dir.join(format!("image-{images}"));
            std::fs::write(&path, &image).unwrap();
            check_state(
                &path,
                acked,
                synced,
                &format!("power lost after operation {upto} ({what}), seed {seed}"),
            );
            std::fs::remove_file(&path).unwrap();
            images += 1;
        }
    }
    images
}

fn core_power_loss(durability: Durability, write_ahead: bool, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (ops, states) = core_workload(&dir.path().join("db"), durability, write_ahead, seed);
    let images = replay(&ops, dir.path(), seed, |path, acked, synced, ctx| {
        let Some(acked) = acked else {
            // Not even creation was acknowledged: an error is fine, but a
            // file that opens must be a clean, empty database.
            if let Ok(db) = Db::open(path) {
                db.check().unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(contents(&db), State::new(), "{ctx}");
            }
            return;
        };
        let db = Db::open(path).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
        db.check()
            .unwrap_or_else(|e| panic!("{ctx}: check failed: {e}"));
        let got = contents(&db);
        let allowed: Vec<usize> = match durability {
            Durability::Immediate => vec![acked as usize, acked as usize + 1],
            // Unsynced commits are lost; a sync in flight may land.
            _ => vec![synced as usize, acked as usize],
        };
        assert!(
            allowed.iter().any(|&i| states.get(i) == Some(&got)),
            "{ctx}: contents match none of the states {allowed:?} (acked {acked}, synced {synced})"
        );
        // The recovered file takes new commits and checks clean again.
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("after").unwrap();
        w.insert(t, b"k", b"v").unwrap();
        w.commit().unwrap();
        db.check()
            .unwrap_or_else(|e| panic!("{ctx}: check after a new commit failed: {e}"));
    });
    eprintln!(
        "{durability:?}: {} operations, {images} crash images opened",
        ops.len()
    );
}

#[test]
fn core_survives_power_loss_at_every_point() {
    core_power_loss(Durability::Immediate, false, 0x5eed_0001);
}

#[test]
fn core_unsynced_commits_survive_power_loss_up_to_the_last_sync() {
    core_power_loss(Durability::None, false, 0x5eed_0002);
}

#[test]
fn syncs_that_write_ahead_survive_power_loss_at_every_point() {
    core_power_loss(Durability::None, true, 0x5eed_0004);
}

#[test]
fn store_survives_power_loss_at_every_point() {
    let seed = 0x5eed_0003u64;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let io = Arc::new(RecordingIo::new());
    // (contents at head, current revision) after each acknowledged request.
    type State = (BTreeMap<Vec<u8>, Vec<u8>>, i64);
    let mut states: Vec<State> = Vec::new();
    {
        let db = Options::new()
            .page_size(512)
            .io_observer(io.clone())
            .open(&path)
            .unwrap();
        // Small compaction batches: a compaction spans several commits, so
        // power fails in the middle of one too.
        let store = Store::with_db(db, StoreOptions::new().compaction_batch(2)).unwrap();
        let mut model = BTreeMap::new();
        states.push((model.clone(), 1));
        io.mark(0);
        let mut rng = Rng(seed);
        for k in 1..=40u64 {
            let key = format!("/registry/pods/p{:02}", rng.below(25)).into_bytes();
            if rng.below(5) == 0 {
                store.delete_range(&key, b"", false).unwrap();
                model.remove(&key);
            } else if k % 13 == 0 {
                let cur = store.current_revision().unwrap();
                store.compact(cur - 3).unwrap();
            } else if k % 17 == 0 {
                // Online defragmentation in small batches, each a commit.
                store
                    .db()
                    .defrag_with(&revkv::DefragOptions::new().batch_pages(4))
                    .unwrap();
            } else {
                let v = vec![k as u8; 1 + rng.below(700) as usize];
                store.put(&key, &v).unwrap();
                model.insert(key, v);
            }
            states.push((model.clone(), store.current_revision().unwrap()));
            io.mark(k);
        }
    }
    let ops = io.ops();
    let images = replay(&ops, dir.path(), seed, |image, acked, _, ctx| {
        let Some(acked) = acked else { return };
        // Read-only first: a compaction the crash interrupted is still
        // unfinished there (a read-write open finishes it). The history
        // hash must not depend on how far it got.
        let unfinished = Store::open(image, StoreOptions::new().read_only(true))
            .and_then(|s| s.hash_kv(0))
            .unwrap_or_else(|e| panic!("{ctx}: read-only open or hash failed: {e}"));
        let db = Db::open(image).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
        let store = Store::with_db(db, StoreOptions::new())
            .unwrap_or_else(|e| panic!("{ctx}: store open failed: {e}"));
        store
            .check()
            .unwrap_or_else(|e| panic!("{ctx}: check failed: {e}"));
        let finished = store.hash_kv(0).unwrap();
        assert_eq!(
            (unfinished.hash, unfinished.compact_revision),
            (finished.hash, finished.compact_revision),
            "{ctx}: the history hash changed when open finished the compaction"
        );
        let head = store
            .range(b"/", &prefix_end(b"/"), &RangeOptions::default())
            .unwrap();
        let got: BTreeMap<Vec<u8>, Vec<u8>> =
            head.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        let rev = store.current_revision().unwrap();
        let ok = [acked as usize, acked as usize + 1]
            .iter()
            .any(|&i| states.get(i).is_some_and(|(m, r)| *m == got && *r == rev));
        assert!(ok, "{ctx}: store state matches neither acknowledged request {acked} nor the next (revision {rev})");
    });
    eprintln!(
        "store: {} operations, {images} crash images opened",
        ops.len()
    );
}

/// Commits `n` rows `PREFIXnnnn` = `value` to table "t".
/// Reopens the file after its handle was dropped, checks it whole, and
/// returns what it holds.
fn reopened(path: &std::path::Path) -> State {
    let db = Db::open(path).unwrap();
    db.check().unwrap();
    contents(&db)
}

fn insert_rows(
    db: &Db,
    durability: Durability,
    prefix: &str,
    n: u32,
    value: &[u8],
) -> revkv::Result<()> {
    let mut w = db.begin_write()?;
    w.set_durability(durability);
    let t = w.open_table("t")?;
    for i in 0..n {
        w.insert(t, format!("{prefix}{i:04}").as_bytes(), value)?;
    }
    w.commit()
}

/// Fails each write, sync and length change of one commit in turn.
#[test]
fn a_failed_write_or_sync_never_loses_or_corrupts() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    loop {
        let path = dir.path().join(format!("db-{n}"));
        let io = Arc::new(RecordingIo::new());
        let db = Options::new()
            .page_size(512)
            .io_observer(io.clone())
            .open(&path)
            .unwrap();
        insert_rows(&db, Durability::Immediate, "old", 200, &[1; 50]).unwrap();
        let before = contents(&db);
        let start = io.calls();
        io.fail_at(start + n, false);
        let result = insert_rows(&db, Durability::Immediate, "new", 300, &[2; 60]);
        io.heal();
        if result.is_ok() {
            // n passed the commit's last operation: every point was covered.
            assert!(n > 3, "a commit makes several writes and a sync");
            break;
        }
        // Reads keep working and show the state before the failed commit.
        assert_eq!(
            contents(&db),
            before,
            "operation {n}: a failed commit is invisible"
        );
        match db.begin_write() {
            Ok(mut w) => {
                // Failed before its meta: the handle goes on.
                let t = w.open_table("t").unwrap();
                w.insert(t, b"later", b"1").unwrap();
                w.commit().unwrap();
                db.check().unwrap();
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Poisoned, "operation {n}: {e}");
                drop(db);
                let after = reopened(&path);
                assert!(
                    after == before || after.len() == before.len() + 300,
                    "operation {n}: reopened to a third state"
                );
            }
        }
        n += 1;
    }
}

/// Fails each write, sync and length change of a sync that writes its
/// held pages ahead, in turn: the sync fails cleanly, reads go on, and the
/// file reopens to the state before it or after it.
#[test]
fn a_failed_write_ahead_never_loses_or_corrupts() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    loop {
        let path = dir.path().join(format!("db-{n}"));
        let io = Arc::new(RecordingIo::new());
        let db = Options::new()
            .page_size(512)
            .durability(Durability::None)
            .write_ahead_min_pages(1)
            .io_observer(io.clone())
            .open(&path)
            .unwrap();
        insert_rows(&db, Durability::Immediate, "old", 200, &[1; 50]).unwrap();
        let before = contents(&db);
        for round in 0..3 {
            insert_rows(&db, Durability::None, &format!("new{round}"), 100, &[2; 60]).unwrap();
        }
        let after = contents(&db);
        let start = io.calls();
        io.fail_at(start + n, false);
        let result = db.sync();
        io.heal();
        if result.is_ok() {
            assert!(
                n > 3,
                "a sync that writes ahead makes several writes and syncs"
            );
            break;
        }
        assert_eq!(contents(&db), after, "operation {n}: reads go on");
        match db.sync() {
            Ok(()) => {
                drop(db);
                assert_eq!(reopened(&path), after, "operation {n}: the retried sync");
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Poisoned, "operation {n}: {e}");
                drop(db);
                let got = reopened(&path);
                assert!(
                    got == before || got == after,
                    "operation {n}: reopened to a third state"
                );
            }
        }
        n += 1;
    }
}

/// The meta that marks the last commit synced (written when the last handle
/// closes) torn at every byte of its used part and at its sector: the commit
/// it marks is never lost. (It was once rewritten in place, where a torn
/// write destroyed the only meta of an acknowledged commit.)
#[test]
fn a_torn_synced_marker_never_loses_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let io = Arc::new(RecordingIo::new());
    let db = Options::new()
        .page_size(512)
        .io_observer(io.clone())
        .open(&path)
        .unwrap();
    let mut want = State::new();
    for k in 0..3u8 {
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("t").unwrap();
        w.insert(t, &[b'k', k], &[k; 40]).unwrap();
        w.commit().unwrap();
        want.insert(("t".to_string(), vec![b'k', k]), vec![k; 40]);
    }
    drop(db); // writes the synced marker
    let ops = io.ops();
    let last_write = ops
        .iter()
        .rposition(|op| matches!(op, IoOp::Write { .. }))
        .unwrap();
    let upto = last_write + 1;
    assert_eq!(
        unsynced_writes(&ops, upto),
        1,
        "the marker is written alone"
    );
    let IoOp::Write { offset, data } = &ops[last_write] else {
        unreachable!()
    };
    assert!(
        *offset < 1024 && data.len() == 512,
        "the marker is a meta page"
    );
    for cut in (0..=128).chain([512]) {
        let image = crash_image(&ops, upto, u64::MAX, Some((0, cut)));
        let p = dir.path().join(format!("torn-{cut}"));
        std::fs::write(&p, &image).unwrap();
        let db = Db::open(&p).unwrap_or_else(|e| panic!("marker torn at {cut}: {e}"));
        assert_eq!(contents(&db), want, "marker torn at byte {cut}");
        db.check().unwrap();
    }
}

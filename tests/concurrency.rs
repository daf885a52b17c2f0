//! Readers keep consistent, unchanging snapshots while the writer commits
//! thousands of transactions and grows the file; long readers pin pages and
//! release them when they end; handles are Send + Sync.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use revkv::{Db, Options, ReadTxn, TxnRead};

fn snapshot_contents(r: &ReadTxn) -> BTreeMap<Vec<u8>, Vec<u8>> {
    match r.open_table("t") {
        Ok(t) => r
            .range(t, Bound::Unbounded, Bound::Unbounded)
            .unwrap()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Db>();
    both::<ReadTxn>();
    both::<revkv::mvcc::Store>();
    fn send<T: Send>() {}
    send::<revkv::WriteTxn>();
    send::<revkv::stream::RangeStream>();
}

#[test]
fn snapshots_stay_unchanged_while_the_writer_grows_the_file() {
    readers_see_unchanging_snapshots(Options::new(), 0);
}

/// Unsynced commits keep their pages in memory; a tiny limit makes most
/// commits write them out, and periodic syncs retire them, while readers
/// hold snapshots that reach pages in memory and in the file.
#[test]
fn snapshots_stay_unchanged_under_unsynced_commits_held_in_memory() {
    let opts = Options::new()
        .durability(revkv::Durability::None)
        .unwritten_limit(48 << 10);
    readers_see_unchanging_snapshots(opts, 97);
}

fn readers_see_unchanging_snapshots(opts: Options, sync_every: u32) {
    let dir = tempfile::tempdir().unwrap();
    let db = opts.page_size(1024).open(dir.path().join("db")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The writer starts once every reader has checked one snapshot, and
    // each reader checks one more after the writer is done: their checks
    // span the writes whatever the scheduling.
    let started = Arc::new(Barrier::new(4));
    let readers: Vec<_> = (0..3)
        .map(|id| {
            let (db, stop, started) = (db.clone(), stop.clone(), started.clone());
            std::thread::spawn(move || {
                let mut checks = 0u64;
                loop {
                    let stopping = stop.load(Ordering::Acquire);
                    let r = db.begin_read().unwrap();
                    let first = snapshot_contents(&r);
                    // Every committed state is "n keys k0..k(n-1), each value its own index".
                    for (i, (k, v)) in first.iter().enumerate() {
                        assert_eq!(
                            k,
                            &format!("k{i:06}").into_bytes(),
                            "reader {id}: a torn state"
                        );
                        assert_eq!(v[0], (i % 251) as u8);
                    }
                    for _ in 0..3 {
                        assert_eq!(
                            snapshot_contents(&r),
                            first,
                            "reader {id}: the snapshot changed under it"
                        );
                        if let Ok(t) = r.open_table("t") {
                            let back: Vec<Vec<u8>> = r
                                .range(t, Bound::Unbounded, Bound::Unbounded)
                                .unwrap()
                                .rev()
                                .map(|e| e.unwrap().0.to_vec())
                                .collect();
                            assert!(
                                back.iter().rev().eq(first.keys()),
                                "reader {id}: backward scan differs"
                            );
                        }
                        checks += 1;
                    }
                    if checks == 3 {
                        started.wait();
                    }
                    if stopping {
                        return checks;
                    }
                }
            })
        })
        .collect();
    started.wait();
    let start_size = db.stats().file_size;
    for n in 0..2000u32 {
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("t").unwrap();
        // Three new keys and one rewritten old one (same value), so pages
        // are freed and reused as well as added.
        let old = n.wrapping_mul(2_654_435_761) % (n * 3 + 1);
        for i in (n * 3..n * 3 + 3).chain([old]) {
            w.insert(t, format!("k{i:06}").as_bytes(), &[(i % 251) as u8; 150])
                .unwrap();
        }
        w.commit().unwrap();
        if sync_every > 0 && n % sync_every == 0 {
            db.sync().unwrap();
        }
    }
    stop.store(true, Ordering::Release);
    for r in readers {
        assert!(
            r.join().unwrap() >= 6,
            "a snapshot checked before the writes and one after"
        );
    }
    assert!(
        db.stats().file_size > 8 * start_size,
        "the file grew while readers read"
    );
    db.check().unwrap();
}

#[test]
fn a_long_reader_pins_pages_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    let overwrite = |round: u8| {
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("t").unwrap();
        for i in 0..500u32 {
            w.insert(t, format!("k{i:04}").as_bytes(), &[round; 100])
                .unwrap();
        }
        w.commit().unwrap();
    };
    overwrite(0);
    let long = db.begin_read().unwrap();
    for round in 1..20 {
        overwrite(round);
    }
    let s = db.stats();
    assert_eq!(s.open_readers, 1);
    assert!(s.longest_reader.is_some());
    assert!(s.pinned_pages > 0, "{s:?}");
    // The long reader still sees round 0.
    let t = long.open_table("t").unwrap();
    assert_eq!(long.get(t, b"k0000").unwrap(), Some(&[0u8; 100][..]));
    drop(long);
    // Without readers, a steady overwrite workload reuses pages: the file
    // stops growing.
    for round in 20..30 {
        overwrite(round);
    }
    let settled = db.stats().allocated_pages;
    for round in 30..60 {
        overwrite(round);
    }
    let s = db.stats();
    assert_eq!((s.pinned_pages, s.open_readers), (0, 0));
    assert!(
        s.allocated_pages <= settled + 4,
        "the file kept growing: {} -> {}",
        settled,
        s.allocated_pages
    );
}

/// `Db::sync` from one thread while another makes unsynced commits: a sync
/// must never mark as synced a commit whose pages are still in memory
/// (reopening then finds every commit intact).
#[test]
fn sync_races_with_unsynced_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Options::new()
        .page_size(1024)
        .durability(revkv::Durability::None)
        .open(&path)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The commits start after the first sync, and the last sync follows
    // them: the syncs span the commits whatever the scheduling.
    let started = Arc::new(Barrier::new(2));
    let syncer = {
        let (db, stop, started) = (db.clone(), stop.clone(), started.clone());
        std::thread::spawn(move || {
            let mut syncs = 0u32;
            loop {
                let stopping = stop.load(Ordering::Acquire);
                db.sync().unwrap();
                syncs += 1;
                if syncs == 1 {
                    started.wait();
                }
                if stopping {
                    return syncs;
                }
            }
        })
    };
    started.wait();
    for i in 0..3000u32 {
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("t").unwrap();
        w.insert(t, format!("k{:06}", i % 700).as_bytes(), &i.to_le_bytes())
            .unwrap();
        w.commit().unwrap();
    }
    stop.store(true, Ordering::Release);
    assert!(
        syncer.join().unwrap() >= 2,
        "a sync before the commits and one after"
    );
    let want = snapshot_contents(&db.begin_read().unwrap());
    drop(db);
    let db = Db::open(&path).unwrap();
    assert!(db.recovery().is_none(), "{:?}", db.recovery());
    db.check().unwrap();
    assert_eq!(snapshot_contents(&db.begin_read().unwrap()), want);
}

//! Concurrent writers share commits (group commit) without sharing
//! revisions; readers see revisions only move forward.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use revkv::mvcc::{CommitMode, RangeOptions, Store, StoreOptions};

fn hammer(store: Store, writers: usize, per_writer: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    // The writers start once the reader has read once: however the threads
    // are scheduled, the reader's reads span the writes (the first before
    // them, the last after them), with as many in between as it gets.
    let started = Arc::new(Barrier::new(writers + 1));
    let reader = {
        let (s, stop, started) = (store.clone(), stop.clone(), started.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            let mut reads = 0u64;
            loop {
                // Read after `stop` is seen, so the last read follows every write.
                let stopping = stop.load(Ordering::Acquire);
                let r = s
                    .range(
                        b"w",
                        b"x",
                        &RangeOptions {
                            count_only: true,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                assert!(
                    r.header.revision >= last,
                    "revisions went back: {} after {last}",
                    r.header.revision
                );
                // Every write is one key: the count follows the revision.
                assert_eq!(r.count, r.header.revision - 1);
                last = r.header.revision;
                reads += 1;
                if reads == 1 {
                    started.wait();
                }
                if stopping {
                    return (reads, last);
                }
            }
        })
    };
    let handles: Vec<_> = (0..writers)
        .map(|t| {
            let (s, started) = (store.clone(), started.clone());
            std::thread::spawn(move || {
                started.wait();
                (0..per_writer)
                    .map(|i| {
                        s.put(format!("w{t:02}-{i:05}").as_bytes(), b"v")
                            .unwrap()
                            .header
                            .revision
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for h in handles {
        for rev in h.join().unwrap() {
            assert!(seen.insert(rev), "revision {rev} given to two writes");
        }
    }
    stop.store(true, Ordering::Release);
    let total = (writers * per_writer) as i64;
    let (reads, last) = reader.join().unwrap();
    assert!(reads >= 2, "a read before the writes and one after");
    assert_eq!(last, total + 1, "the last read saw every write");
    assert_eq!(seen.len() as i64, total);
    assert_eq!(store.current_revision().unwrap(), total + 1);
    let r = store
        .range(
            b"w",
            b"x",
            &RangeOptions {
                count_only: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.count, total);
    store.check().unwrap();
}

#[test]
fn group_commit_gives_every_write_its_own_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), StoreOptions::new()).unwrap();
    hammer(store.clone(), 4, 250);
    // Shared fsyncs: fewer commits than writes.
    let commits = store.db().stats().txid;
    eprintln!("1000 durable writes from 4 threads in {commits} commits");
}

#[test]
fn batched_mode_syncs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mode = CommitMode::Batched {
        max_writes: 100,
        max_delay: Duration::from_millis(20),
    };
    let store = Store::open(&path, StoreOptions::new().commit_mode(mode)).unwrap();
    hammer(store.clone(), 3, 200);
    store.put(b"last", b"1").unwrap();
    store.sync().unwrap();
    drop(store);
    let store = Store::open(&path, StoreOptions::new()).unwrap();
    assert_eq!(store.current_revision().unwrap(), 602);
}

/// Half way to `max_writes` the background syncer starts a sync: the writes
/// become durable though no writer reached `max_writes` and `max_delay` is
/// an hour away.
#[test]
fn batched_mode_starts_a_sync_half_way_to_max_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mode = CommitMode::Batched {
        max_writes: 100,
        max_delay: Duration::from_secs(3600),
    };
    let store = Store::open(dir.path().join("s"), StoreOptions::new().commit_mode(mode)).unwrap();
    for i in 0..50 {
        store.put(format!("k{i}").as_bytes(), b"v").unwrap();
    }
    wait_until_synced(&store, "50 writes of 100");
}

/// Waits until every commit so far is synced. Syncs run on the store's
/// thread: this waits for it to report, up to a deadline far beyond any
/// sync's length.
fn wait_until_synced(store: &Store, what: &str) {
    let last = store.db().stats().txid;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.db().stats().synced_txid < last {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} not synced after 60 s: synced {} of {last}",
            store.db().stats().synced_txid
        );
        std::thread::yield_now();
    }
}

/// Writers that fill `max_writes` again and again (hundreds of times) hand
/// their writes to the background syncer and wait only for its round in
/// flight: every write ends up durable though `max_delay` is an hour away,
/// and the store reopens with all of them. (That a handed count reaches
/// the syncer's next round is pinned by a unit test in `mvcc`.)
#[test]
fn batched_mode_hands_full_batches_to_the_syncer() {
    let dir = tempfile::tempdir().unwrap();
    let mode = CommitMode::Batched {
        max_writes: 4,
        max_delay: Duration::from_secs(3600),
    };
    let store = Store::open(dir.path().join("s"), StoreOptions::new().commit_mode(mode)).unwrap();
    // Many times `max_writes`, back to back: writers fill it while the
    // syncer's rounds run.
    for i in 0..400 {
        store.put(format!("k{i}").as_bytes(), b"v").unwrap();
    }
    wait_until_synced(&store, "400 writes");
    let path = dir.path().join("s");
    drop(store);
    let store = Store::open(&path, StoreOptions::new()).unwrap();
    assert_eq!(store.current_revision().unwrap(), 401);
}

/// Compaction and defragmentation give way to foreground writers but are
/// not starved by them: both finish while two writers put back to back and
/// batched syncs run (their last rounds make the background work wait), and
/// the store holds exactly what it should afterwards.
#[test]
fn compaction_and_defrag_finish_under_back_to_back_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mode = CommitMode::Batched {
        max_writes: 200,
        max_delay: Duration::from_millis(5),
    };
    // Small limits, so that syncs write ahead in all their rounds (and the
    // last one makes the background work wait) and the background work
    // writes ahead itself.
    let db = revkv::Options::new()
        .durability(revkv::Durability::None)
        .unwritten_limit(256 << 10)
        .write_ahead_min_pages(1)
        .open(&path)
        .unwrap();
    let store = Store::with_db(db, StoreOptions::new().commit_mode(mode)).unwrap();
    let keys = 3000;
    for round in 0..2u8 {
        for i in 0..keys {
            store
                .put(format!("k{i:05}").as_bytes(), &[round; 512])
                .unwrap();
        }
    }
    let rev = store.current_revision().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (store, stop) = (store.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut puts = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store
                        .put(format!("w{t}/{}", puts % 100).as_bytes(), b"v")
                        .unwrap();
                    puts += 1;
                }
                puts
            })
        })
        .collect();
    store.compact(rev).unwrap();
    let report = store.db().defrag().unwrap();
    stop.store(true, Ordering::Relaxed);
    let puts: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(report.batches > 0, "{report:?}");

    let check = |store: &Store| {
        let at = |r: i64| RangeOptions {
            revision: r,
            ..RangeOptions::default()
        };
        let kept = store.range(b"k", b"l", &at(rev)).unwrap();
        assert_eq!(kept.kvs.len(), keys);
        assert!(kept
            .kvs
            .iter()
            .all(|kv| kv.value == [1; 512] && kv.version == 2));
        let err = store.range(b"k", b"l", &at(rev - 1)).unwrap_err();
        assert_eq!(err.kind(), revkv::ErrorKind::Compacted);
        assert_eq!(
            store.current_revision().unwrap(),
            rev + puts as i64,
            "every writer's put has its revision"
        );
    };
    check(&store);
    store.sync().unwrap();
    drop(store);
    let store = Store::open(&path, StoreOptions::new()).unwrap();
    check(&store);
    store.check().unwrap();
}

/// Batched mode with nothing that would sync on its own: a store's writes
/// stay parked in an open transaction holding the writer lock.
fn parking_store(path: &std::path::Path) -> Store {
    let mode = CommitMode::Batched {
        max_writes: 1_000_000,
        max_delay: Duration::from_secs(3600),
    };
    Store::open(path, StoreOptions::new().commit_mode(mode)).unwrap()
}

/// Runs `work` on another thread and fails if it has not returned long
/// after any real run of it would have: a deadlock shows as a failure, not
/// a hung suite.
fn finishes<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(work()).unwrap());
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("{what} did not finish in 120 s: waiting on the parked writes?"))
}

/// Everyone else who needs the writer lock (a storage write transaction, a
/// sync, compaction, defragmentation) commits the parked writes instead of
/// waiting for them, and finds them committed.
#[test]
fn parked_writes_never_hold_up_other_users_of_the_writer_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = parking_store(&dir.path().join("s"));
    for i in 0..100 {
        store.put(format!("k{i:03}").as_bytes(), b"v1").unwrap();
    }
    // Parked: not yet in any commit a storage-level reader can see.
    let stored = |s: &Store| {
        let r = s.db().begin_read().unwrap();
        let kv = r.open_table("kv").unwrap();
        revkv::TxnRead::table_len(&r, kv).unwrap()
    };
    assert_eq!(stored(&store), 0);
    let s = store.clone();
    finishes("a storage write transaction", move || {
        let mut w = s.db().begin_write().unwrap();
        let t = w.open_table("other").unwrap();
        revkv::TxnRead::get(&w, t, b"x").unwrap();
        w.insert(t, b"x", b"y").unwrap();
        w.commit().unwrap();
        // Committed before this transaction began: a storage-level reader
        // sees the store's writes.
        assert_eq!(stored(&s), 100);
    });
    store.put(b"k000", b"v2").unwrap();
    let s = store.clone();
    finishes("a sync", move || s.sync().unwrap());
    store.put(b"k001", b"v2").unwrap();
    let s = store.clone();
    finishes("a compaction", move || {
        let rev = s.current_revision().unwrap();
        s.compact(rev).unwrap();
    });
    store.put(b"k002", b"v2").unwrap();
    let s = store.clone();
    finishes("a defragmentation", move || s.db().defrag().unwrap());
    store.put(b"k003", b"v2").unwrap();
    let got = store.range(b"k", b"l", &RangeOptions::default()).unwrap();
    assert_eq!(got.count, 100);
    let twice: Vec<_> = got
        .kvs
        .iter()
        .filter(|kv| kv.version == 2)
        .map(|kv| kv.key.clone())
        .collect();
    assert_eq!(
        twice,
        [
            b"k000".to_vec(),
            b"k001".to_vec(),
            b"k002".to_vec(),
            b"k003".to_vec()
        ]
    );
    store.check().unwrap();
}

/// A write is visible to every thread once it is acknowledged, by a point
/// read (through the parked transaction) and by a range (which has it
/// committed first), while it is still parked.
#[test]
fn parked_writes_are_visible_to_every_thread_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = parking_store(&path);
    let done = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let n = 2000;
    let writer = {
        let (store, done) = (store.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            for i in 1..=n {
                store
                    .put(format!("k{i:05}").as_bytes(), format!("{i}").as_bytes())
                    .unwrap();
                done.store(i, Ordering::SeqCst);
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (store, done) = (store.clone(), Arc::clone(&done));
            std::thread::spawn(move || loop {
                let acked = done.load(Ordering::SeqCst);
                if acked > 0 {
                    let key = format!("k{acked:05}");
                    let got = store
                        .range(key.as_bytes(), b"", &RangeOptions::default())
                        .unwrap();
                    assert_eq!(
                        got.kvs.len(),
                        1,
                        "acknowledged write {acked} not seen by a point read"
                    );
                    assert!(
                        got.header.revision > acked,
                        "revision {} behind write {acked}",
                        got.header.revision
                    );
                }
                if t == 1 {
                    let acked = done.load(Ordering::SeqCst);
                    let all = store
                        .range(
                            b"k",
                            b"l",
                            &RangeOptions {
                                count_only: true,
                                ..Default::default()
                            },
                        )
                        .unwrap();
                    assert!(
                        all.count >= acked,
                        "a range saw {} of {acked} acknowledged writes",
                        all.count
                    );
                }
                if acked == n {
                    break;
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    drop(store);
    let store = Store::open(&path, StoreOptions::new()).unwrap();
    assert_eq!(store.current_revision().unwrap(), n + 1);
}

/// Batched mode: point reads of keys whose last write is parked and of keys
/// whose last write is committed (a range commits the parked writes now and
/// then) both see every acknowledged write, while compaction runs its
/// slices in the same parked transaction.
#[test]
fn point_reads_see_acknowledged_writes_while_compaction_shares_the_parked_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = parking_store(&path);
    let (keys, n) = (50i64, 6000i64);
    let done = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writer = {
        let (store, done) = (store.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            for i in 1..=n {
                let key = format!("k{:02}", i % keys);
                store.put(key.as_bytes(), &i.to_be_bytes()).unwrap();
                done.store(i, Ordering::SeqCst);
            }
        })
    };
    let reader = {
        let (store, done) = (store.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut slot = 0;
            loop {
                let acked = done.load(Ordering::SeqCst);
                slot = (slot + 7) % keys;
                // The last acknowledged write to this key: the largest
                // i <= acked with i % keys == slot.
                let last = acked - (acked - slot).rem_euclid(keys);
                if last >= 1 {
                    let got = store
                        .range(
                            format!("k{slot:02}").as_bytes(),
                            b"",
                            &RangeOptions::default(),
                        )
                        .unwrap();
                    let value = i64::from_be_bytes(got.kvs[0].value[..].try_into().unwrap());
                    assert!(
                        value >= last,
                        "k{slot:02}: read {value}, write {last} acknowledged"
                    );
                    assert!(got.header.revision > acked, "revision behind write {acked}");
                }
                if acked % 97 == 0 {
                    // Commits the parked writes: the next reads of these
                    // keys read the last commit.
                    store.range(b"k", b"l", &RangeOptions::default()).unwrap();
                }
                if acked == n {
                    break;
                }
            }
        })
    };
    // Compaction, again and again, to revisions behind the writer, from
    // two threads at once (one runs, the other waits and then finds the
    // scheduled target moved on, or nothing left).
    let compactor = |lag: i64| {
        let (store, done) = (store.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            while done.load(Ordering::SeqCst) < n {
                let current = store.current_revision().unwrap();
                if current > 2 * keys {
                    match store.compact(current - lag) {
                        Ok(_) => {}
                        Err(e) if e.kind() == revkv::ErrorKind::Compacted => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        })
    };
    let compactors = [compactor(keys), compactor(keys / 2)];
    writer.join().unwrap();
    reader.join().unwrap();
    for c in compactors {
        c.join().unwrap();
    }
    // Compacted to head, every key keeps its last version and nothing else.
    store.compact(store.current_revision().unwrap()).unwrap();
    assert_eq!(store.check().unwrap(), keys as u64, "stored versions");
    // Every key reads its last write, before and after reopening.
    let check = |store: &Store| {
        let all = store.range(b"k", b"l", &RangeOptions::default()).unwrap();
        assert_eq!(all.kvs.len() as i64, keys);
        for kv in &all.kvs {
            let i = i64::from_be_bytes(kv.value[..].try_into().unwrap());
            assert!(i > n - keys, "{:?} holds {i}", kv.key);
        }
    };
    check(&store);
    drop(store);
    let store = Store::open(&path, StoreOptions::new()).unwrap();
    check(&store);
    store.check().unwrap();
}

/// Notes the thread of every sync while armed.
#[derive(Default)]
struct SyncThreads {
    armed: AtomicBool,
    threads: parking_lot::Mutex<Vec<String>>,
    synced: parking_lot::Condvar,
}

impl revkv::testing::IoObserver for SyncThreads {
    fn write(&self, _offset: u64, _data: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        if self.armed.load(Ordering::Acquire) {
            let name = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string();
            self.threads.lock().push(name);
            self.synced.notify_all();
        }
        Ok(())
    }

    fn set_len(&self, _len: u64) -> std::io::Result<()> {
        Ok(())
    }
}

/// A batched store's compaction paces itself against the disk by syncs
/// that the background syncer makes, so the removals go on while the disk
/// writes: during a compaction with no foreground writes the compacting
/// caller syncs only the commit that moves the compacted revision (it used
/// to make every pacing sync itself, a third of its time), the syncer the
/// rest. The syncer is never woken by time or by writes here: only the
/// compaction hands it rounds.
#[test]
fn a_batched_compaction_syncs_on_the_syncer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(SyncThreads::default());
    let db = revkv::Options::new()
        .durability(revkv::Durability::None)
        // Pacing syncs once commits hold half of it in memory (each commit
        // of the parked transaction, at 4096 pages, holds 16 MiB); a commit
        // that would hold all of it writes its pages itself instead.
        .unwritten_limit(40 << 20)
        .io_observer(io.clone())
        .open(dir.path().join("s"))
        .unwrap();
    let mode = CommitMode::Batched {
        max_writes: u32::MAX,
        max_delay: Duration::from_secs(3600),
    };
    let store = Store::with_db(db, StoreOptions::new().commit_mode(mode)).unwrap();
    // Enough removals to fill the parked transaction (4096 pages) a few
    // times: its commits are what leaves pages held in memory.
    for round in 0..20u32 {
        let puts = (0..10_000u32).map(|i| revkv::mvcc::TxnRequest {
            success: vec![revkv::mvcc::RequestOp::Put(revkv::mvcc::PutRequest {
                key: format!("key-{i:05}").into_bytes(),
                value: vec![round as u8; 300],
                ..Default::default()
            })],
            ..Default::default()
        });
        for r in store.write_batch(puts).unwrap() {
            r.unwrap();
        }
    }
    store.sync().unwrap();
    io.armed.store(true, Ordering::Release);
    store.compact(store.current_revision().unwrap()).unwrap();
    let caller = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    let by_caller = io.threads.lock().iter().filter(|t| **t == caller).count();
    // The caller synced once: the durable commit that moves the compacted
    // revision, before any removal.
    assert_eq!(
        by_caller,
        1,
        "syncs during the compaction: {:?}",
        io.threads.lock()
    );
    // A round handed over may still be running: wait for the syncer's
    // first sync, up to a deadline far beyond any sync's length.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    {
        let mut threads = io.threads.lock();
        while !threads.iter().any(|t| t == "revkv-syncer") {
            let timed_out = io.synced.wait_until(&mut threads, deadline).timed_out();
            assert!(!timed_out, "the compaction was never paced: {threads:?}");
        }
    }
    io.armed.store(false, Ordering::Release);
    let threads = io.threads.lock().clone();
    let by_syncer = threads.iter().filter(|t| *t == "revkv-syncer").count();
    assert_eq!(by_caller + by_syncer, threads.len(), "{threads:?}");
    store.check().unwrap();
}

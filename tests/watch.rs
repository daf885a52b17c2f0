//! Watch: for random write sequences with compactions, every watcher started
//! at a random revision receives exactly the reference model's events from
//! that revision on, in order (or, once compaction passed what it still
//! needs, the compacted error after a correct prefix); and the
//! list-then-watch handoff under concurrent writes is exact.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use revkv::mvcc::{
    prefix_end, EventKind, PutRequest, RangeOptions, RequestOp, Store, StoreOptions, TxnRequest,
};
use revkv::stream::StreamOptions;
use revkv::watch::{WatchOptions, Watcher};
use revkv::ErrorKind;

/// What a watcher reports of one event.
type Seen = (EventKind, Vec<u8>, Vec<u8>, i64, i64, i64);

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    /// Deletes every key from `a` to `b`.
    DeleteRange(u8, u8),
    /// Two puts in one transaction (one revision, two sub-revisions).
    PutTwo(u8, u8),
    Compact(u8),
    /// Start a watcher now, from this many revisions back.
    Watch(u8, u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..20, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..20).prop_map(Op::Delete),
        1 => (0u8..20, 0u8..20).prop_map(|(a, b)| Op::DeleteRange(a.min(b), a.max(b))),
        1 => (0u8..20, 0u8..20).prop_map(|(a, b)| Op::PutTwo(a, b)),
        1 => (0u8..10).prop_map(Op::Compact),
        2 => (0u8..12, 0u8..20, any::<bool>()).prop_map(|(back, k, prefix)| Op::Watch(back, k, prefix)),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("/k/{:02}", k).into_bytes()
}

/// The reference: each key's (value, create, version), and every event.
#[derive(Default)]
struct Model {
    live: BTreeMap<Vec<u8>, (Vec<u8>, i64, i64)>,
    events: Vec<Seen>,
    rev: i64,
}

impl Model {
    fn put(&mut self, k: Vec<u8>, v: Vec<u8>, rev: i64) {
        let (create, version) = match self.live.get(&k) {
            Some((_, c, ver)) => (*c, ver + 1),
            None => (rev, 1),
        };
        self.live.insert(k.clone(), (v.clone(), create, version));
        self.events
            .push((EventKind::Put, k, v, rev, create, version));
    }
    fn delete(&mut self, from: Vec<u8>, to: Option<Vec<u8>>, rev: i64) -> bool {
        let keys: Vec<Vec<u8>> = self
            .live
            .keys()
            .filter(|k| match &to {
                None => **k == from,
                Some(to) => **k >= from && k <= &to,
            })
            .cloned()
            .collect();
        for k in &keys {
            self.live.remove(k);
            self.events
                .push((EventKind::Delete, k.clone(), Vec::new(), rev, 0, 0));
        }
        !keys.is_empty()
    }
}

fn seen(w: &mut Watcher, upto: i64, out: &mut Vec<Seen>) -> revkv::Result<()> {
    while w.next_revision() <= upto {
        let before = w.next_revision();
        let Some(r) = w.try_recv()? else {
            // Nothing in range: the watcher still moves past what it read.
            assert!(
                w.next_revision() > before,
                "revision {before} was committed but the watcher did not move"
            );
            continue;
        };
        for e in r.events {
            let kv = &e.event.kv;
            out.push((
                e.event.kind,
                kv.key.clone(),
                kv.value.clone(),
                kv.mod_revision,
                kv.create_revision,
                kv.version,
            ));
        }
    }
    Ok(())
}

struct Open {
    watcher: Watcher,
    start: i64,
    key: Vec<u8>,
    prefix: bool,
    got: Vec<Seen>,
    failed: bool,
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), StoreOptions::new().page_size(512)).unwrap();
    let mut model = Model {
        rev: 1,
        ..Default::default()
    };
    let mut open: Vec<Open> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Put(k, v) => {
                let value = vec![v; 1 + (v as usize % 40)];
                store.put(&key(k), &value).unwrap();
                model.rev += 1;
                model.put(key(k), value, model.rev);
            }
            Op::Delete(k) => {
                let n = store.delete_range(&key(k), b"", false).unwrap().deleted;
                if model.delete(key(k), None, model.rev + 1) {
                    model.rev += 1;
                }
                prop_assert_eq!(
                    n > 0,
                    store.current_revision().unwrap() == model.rev && n > 0
                );
            }
            Op::DeleteRange(a, b) => {
                let mut end = key(b);
                end.push(0);
                store.delete_range(&key(a), &end, false).unwrap();
                if model.delete(key(a), Some(key(b)), model.rev + 1) {
                    model.rev += 1;
                }
            }
            Op::PutTwo(a, b) => {
                if a == b {
                    continue;
                }
                let put = |k: u8| {
                    RequestOp::Put(PutRequest {
                        key: key(k),
                        value: vec![k, a, b],
                        ..Default::default()
                    })
                };
                store
                    .txn(TxnRequest {
                        success: vec![put(a), put(b)],
                        ..Default::default()
                    })
                    .unwrap();
                model.rev += 1;
                model.put(key(a), vec![a, a, b], model.rev);
                model.put(key(b), vec![b, a, b], model.rev);
            }
            Op::Compact(back) => {
                let at = model.rev - back as i64;
                if at > store.compacted_revision().unwrap() {
                    store.compact(at).unwrap();
                }
            }
            Op::Watch(back, k, prefix) => {
                let start = (model.rev + 1 - back as i64).max(1);
                let (wkey, end) = if prefix {
                    (b"/k/".to_vec(), prefix_end(b"/k/"))
                } else {
                    (key(k), Vec::new())
                };
                match store.watch(
                    &wkey,
                    &end,
                    WatchOptions::new().start_revision(start).max_events(3),
                ) {
                    Ok(watcher) => open.push(Open {
                        watcher,
                        start,
                        key: wkey,
                        prefix,
                        got: Vec::new(),
                        failed: false,
                    }),
                    Err(e) => {
                        prop_assert_eq!(e.kind(), ErrorKind::Compacted);
                        prop_assert!(start < store.compacted_revision().unwrap());
                    }
                }
            }
        }
        prop_assert_eq!(store.current_revision().unwrap(), model.rev);
        // Every few operations, each open watcher catches up.
        if i % 5 == 4 {
            for w in open.iter_mut().filter(|w| !w.failed) {
                if let Err(e) = seen(&mut w.watcher, model.rev, &mut w.got) {
                    prop_assert_eq!(e.kind(), ErrorKind::Compacted, "{}", e);
                    w.failed = true;
                }
            }
        }
    }
    for w in open.iter_mut().filter(|w| !w.failed) {
        if let Err(e) = seen(&mut w.watcher, model.rev, &mut w.got) {
            prop_assert_eq!(e.kind(), ErrorKind::Compacted, "{}", e);
            w.failed = true;
        }
    }
    for w in &open {
        let want: Vec<Seen> = model
            .events
            .iter()
            .filter(|e| e.3 >= w.start)
            .filter(|e| {
                if w.prefix {
                    e.1.starts_with(&w.key)
                } else {
                    e.1 == w.key
                }
            })
            .cloned()
            .collect();
        if w.failed {
            prop_assert_eq!(&want[..w.got.len()], &w.got[..], "prefix before the error");
        } else {
            prop_assert_eq!(&w.got, &want, "watcher from {}", w.start);
        }
    }
    Ok(())
}

#[test]
fn watchers_see_exactly_the_models_events() {
    eprintln!("watch: ChaCha seed [21; 32]");
    let config = Config {
        cases: 160,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[21; 32]));
    runner
        .run(&proptest::collection::vec(op(), 1..120), run)
        .unwrap();
}

/// Kubernetes' pattern: list the prefix at R (here as a stream), then watch
/// from R + 1 while a writer goes on; applying both to a map gives the
/// range at any revision the watch has reached.
#[test]
fn list_then_watch_handoff_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), StoreOptions::new()).unwrap();
    let prefix = b"/registry/pods/";
    let end = prefix_end(prefix);
    let key = |i: u32| format!("/registry/pods/ns-{:02}/p{:04}", i % 5, i % 700).into_bytes();
    for i in 0..1500u32 {
        store.put(&key(i), &i.to_le_bytes()).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 1500u32;
            while !stop.load(Ordering::Relaxed) || i < 2500 {
                if i.is_multiple_of(9) {
                    store.delete_range(&key(i * 7), b"", false).unwrap();
                } else {
                    store.put(&key(i), &i.to_le_bytes()).unwrap();
                }
                if i.is_multiple_of(300) {
                    let cur = store.current_revision().unwrap();
                    store.compact(cur - 50).unwrap();
                }
                i += 1;
            }
        })
    };
    // List at R, chunk by chunk, while the writer goes on.
    let stream = store
        .range_stream(prefix, &end, StreamOptions::new().chunk_keys(64))
        .unwrap();
    let listed_at = stream.revision();
    let mut map: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for chunk in stream {
        for kv in chunk.unwrap().to_kvs() {
            map.insert(kv.key, kv.value);
        }
    }
    let mut watcher = store
        .watch(
            prefix,
            &end,
            WatchOptions::new().start_revision(listed_at + 1),
        )
        .unwrap();
    let mut checks = 0;
    while checks < 20 {
        let r = watcher.recv().unwrap();
        for e in r.events {
            match e.event.kind {
                EventKind::Put => map.insert(e.event.kv.key.clone(), e.event.kv.value.clone()),
                EventKind::Delete => map.remove(&e.event.kv.key),
            };
        }
        // Everything up to next_revision - 1 is applied: compare.
        let at = watcher.next_revision() - 1;
        let want: BTreeMap<Vec<u8>, Vec<u8>> = match store.range(
            prefix,
            &end,
            &RangeOptions {
                revision: at,
                ..Default::default()
            },
        ) {
            Ok(r) => r.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect(),
            Err(e) if e.kind() == ErrorKind::Compacted => continue,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(map, want, "at revision {at}");
        checks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn filters_prev_kv_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), StoreOptions::new()).unwrap();
    store.put(b"a", b"1").unwrap();
    let mut puts = store
        .watch(b"a", b"", WatchOptions::new().no_delete(true).prev_kv(true))
        .unwrap();
    let mut deletes = store
        .watch(b"a", b"", WatchOptions::new().no_put(true))
        .unwrap();
    store.put(b"a", b"2").unwrap();
    store.delete_range(b"a", b"", false).unwrap();
    store.put(b"a", b"3").unwrap();
    let r = puts.recv().unwrap();
    let got: Vec<_> = r
        .events
        .iter()
        .map(|e| {
            (
                e.event.kv.value.clone(),
                e.prev_kv.as_ref().map(|p| p.value.clone()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(b"2".to_vec(), Some(b"1".to_vec())), (b"3".to_vec(), None)]
    );
    let r = deletes.recv().unwrap();
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].event.kind, EventKind::Delete);
    assert_eq!(r.events[0].event.kv.mod_revision, 4);
    // Progress: nothing happens to "b"; a notification carries the
    // revision up to which everything was reported.
    let mut quiet = store
        .watch(
            b"b",
            b"",
            WatchOptions::new().progress_notify(Duration::from_millis(20)),
        )
        .unwrap();
    let r = quiet.recv().unwrap();
    assert!(r.progress && r.events.is_empty());
    assert_eq!(r.revision, store.current_revision().unwrap());
    // A start below the compacted revision fails, naming it.
    store.compact(4).unwrap();
    let e = store
        .watch(b"a", b"", WatchOptions::new().start_revision(2))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Compacted);
    assert_eq!(store.watch_metrics().watchers, 3);
    drop((puts, deletes, quiet));
    assert_eq!(store.watch_metrics().watchers, 0);
}

/// Watchers of one range share its test of each revision's events, and
/// watchers of other ranges polled in between (each overwriting what the
/// revision remembers) still get exactly their own events, in revisions of
/// one event, of a few and of more than the 32 a revision remembers.
#[test]
fn watchers_of_shared_and_different_ranges_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), StoreOptions::new()).unwrap();
    let ranges: [(&[u8], Vec<u8>); 4] = [
        (b"/a/", prefix_end(b"/a/")),
        (b"/a/07", Vec::new()),
        (b"/b/", prefix_end(b"/b/")),
        (b"/", vec![0]),
    ];
    // Three watchers per range, registered round-robin.
    let mut watchers: Vec<(usize, Watcher)> = (0..12)
        .map(|i| {
            let (key, end) = &ranges[i % 4];
            // One revision per pull, so the watchers take turns on each.
            let opts = WatchOptions::new().max_events(1);
            (i % 4, store.watch(key, end, opts).unwrap())
        })
        .collect();
    let mut written: Vec<Vec<u8>> = Vec::new();
    for batch in [1usize, 3, 40, 1, 33, 2] {
        let success = (0..batch)
            .map(|i| {
                let key = format!("/{}/{:02}", if i % 3 == 0 { "b" } else { "a" }, i).into_bytes();
                written.push(key.clone());
                RequestOp::Put(PutRequest {
                    key,
                    value: vec![batch as u8],
                    ..Default::default()
                })
            })
            .collect();
        store
            .txn(TxnRequest {
                success,
                ..Default::default()
            })
            .unwrap();
    }
    let current = store.current_revision().unwrap();
    let mut got: Vec<Vec<Vec<u8>>> = vec![Vec::new(); watchers.len()];
    while watchers.iter().any(|(_, w)| w.next_revision() <= current) {
        for ((_, w), got) in watchers.iter_mut().zip(&mut got) {
            w.try_visit(|e, _| got.push(e.kv.key.clone())).unwrap();
        }
    }
    for ((range, _), got) in watchers.iter().zip(got) {
        let (key, end) = &ranges[*range];
        let want: Vec<Vec<u8>> = written
            .iter()
            .filter(|k| match end.as_slice() {
                [] => k.as_slice() == *key,
                [0] => k.as_slice() >= *key,
                end => k.as_slice() >= *key && k.as_slice() < end,
            })
            .cloned()
            .collect();
        assert_eq!(got, want, "watcher of range {range}");
    }
}

/// `Watcher::try_visit_all` serves watchers the feed holds under one lock
/// and the rest one by one (replaying history from the log, reading
/// previous key-values, of another store) with the same events `try_visit`
/// gives, and names the watcher that fails.
#[test]
fn try_visit_all_serves_every_kind_of_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path().join("a"), StoreOptions::new()).unwrap();
    let b = Store::open(dir.path().join("b"), StoreOptions::new()).unwrap();
    for i in 0..5u8 {
        a.put(format!("/k/{i}").as_bytes(), &[i]).unwrap();
    }
    let prefix = prefix_end(b"/k/");
    let mut watchers = vec![
        // History from revision 2: from the revision log.
        a.watch(b"/k/", &prefix, WatchOptions::new().start_revision(2))
            .unwrap(),
        a.watch(b"/k/1", b"", WatchOptions::new().prev_kv(true))
            .unwrap(),
        b.watch(b"/k/", &prefix, WatchOptions::new()).unwrap(),
        a.watch(b"/k/", &prefix, WatchOptions::new()).unwrap(),
    ];
    a.put(b"/k/1", b"new").unwrap();
    b.put(b"/k/x", b"b").unwrap();
    type Seen = Vec<(Vec<u8>, Option<Vec<u8>>)>;
    let mut got: Vec<Seen> = vec![Vec::new(); watchers.len()];
    // Each call serves what is there; a few calls drain everything.
    for _ in 0..10 {
        Watcher::try_visit_all(&mut watchers, |i, e, prev| {
            got[i].push((e.kv.key.clone(), prev.map(|p| p.value.clone())));
        })
        .unwrap();
    }
    let keys =
        |v: &[(Vec<u8>, Option<Vec<u8>>)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let history: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("/k/{i}").into_bytes())
        .chain([b"/k/1".to_vec()])
        .collect();
    assert_eq!(keys(&got[0]), history);
    assert_eq!(got[1], [(b"/k/1".to_vec(), Some(vec![1]))]);
    assert_eq!(keys(&got[2]), [b"/k/x".to_vec()]);
    assert_eq!(keys(&got[3]), [b"/k/1".to_vec()]);
    // A watcher whose next revision compaction removed fails, by index.
    watchers.push(
        a.watch(b"/k/", &prefix, WatchOptions::new().start_revision(2))
            .unwrap(),
    );
    a.compact(a.current_revision().unwrap()).unwrap();
    let (i, e) = Watcher::try_visit_all(&mut watchers, |_, _, _| {}).unwrap_err();
    assert_eq!((i, e.kind()), (4, ErrorKind::Compacted));
    // Failed watchers are skipped from then on.
    a.put(b"/k/2", b"again").unwrap();
    let mut later = Vec::new();
    Watcher::try_visit_all(&mut watchers, |i, _, _| later.push(i)).unwrap();
    assert_eq!(later, [0, 3]);
}

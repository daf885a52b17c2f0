//! The space quota: fill to the quota, every adding write refused while
//! NOSPACE is raised, reads, streams and deletes working, the alarm
//! surviving reopen, then compact, defragment, disarm and write again, with
//! every acknowledged write still there. And compaction's freed pages are
//! reused: a steady, regularly compacted overwrite workload stops growing.

use std::collections::BTreeMap;

use revkv::mvcc::{
    prefix_end, DeleteRangeRequest, PutRequest, RangeOptions, RequestOp, Store, StoreOptions,
    TxnRequest,
};
use revkv::quota::Alarm;
use revkv::stream::StreamOptions;
use revkv::ErrorKind;

const QUOTA: u64 = 1 << 20;

fn open(path: &std::path::Path) -> Store {
    Store::open(path, StoreOptions::new().quota_bytes(QUOTA)).unwrap()
}

fn put_op(key: &[u8], value: &[u8]) -> TxnRequest {
    TxnRequest {
        success: vec![RequestOp::Put(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        })],
        ..Default::default()
    }
}

fn contents(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .range(b"\0", b"\0", &RangeOptions::default())
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

#[test]
fn fill_to_quota_then_recover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.db");
    let store = open(&path);
    let mut acked = BTreeMap::new();
    let value = vec![7u8; 3000];
    // Fill until the quota refuses a put.
    let mut i = 0u32;
    let err = loop {
        let key = format!("/fill/{i:06}").into_bytes();
        match store.put(&key, &value) {
            Ok(_) => {
                acked.insert(key, value.clone());
                i += 1;
            }
            Err(e) => break e,
        }
        assert!(i < 10_000, "the quota was never reached");
    };
    assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
    assert!(err
        .to_string()
        .starts_with("etcdserver: mvcc: database space exceeded"));
    assert!(i > 100, "only {i} puts fit in the quota");
    assert_eq!(store.alarms(), [Alarm::NoSpace]);
    let status = store.status().unwrap();
    assert_eq!(status.alarms, [Alarm::NoSpace]);
    assert_eq!(status.quota, Some(QUOTA));

    // Every request that adds data is refused, however small.
    let refused = |store: &Store| {
        assert_eq!(
            store.put(b"/tiny", b"x").unwrap_err().kind(),
            ErrorKind::NoSpace
        );
        let txn = TxnRequest {
            success: vec![
                RequestOp::DeleteRange(DeleteRangeRequest {
                    key: b"/fill/000000".to_vec(),
                    ..Default::default()
                }),
                RequestOp::Put(PutRequest {
                    key: b"/tiny".to_vec(),
                    value: b"x".to_vec(),
                    ..Default::default()
                }),
            ],
            ..Default::default()
        };
        assert_eq!(store.txn(txn).unwrap_err().kind(), ErrorKind::NoSpace);
        let batch = store.write_batch([put_op(b"/tiny", b"x")]);
        assert_eq!(batch.unwrap_err().kind(), ErrorKind::NoSpace);
    };
    refused(&store);
    // Reads and streams work.
    assert_eq!(contents(&store), acked);
    let streamed: usize = store
        .range_stream(
            b"/fill/",
            &prefix_end(b"/fill/"),
            StreamOptions::new().chunk_keys(7),
        )
        .unwrap()
        .map(|c| c.unwrap().len())
        .sum();
    assert_eq!(streamed, acked.len());

    // The alarm survives reopening.
    drop(store);
    let store = open(&path);
    assert_eq!(store.alarms(), [Alarm::NoSpace]);
    refused(&store);
    assert_eq!(
        store.disarm(Alarm::NoSpace).unwrap_err().kind(),
        ErrorKind::NoSpace
    );

    // Deletes work under the alarm: free three quarters of the keys.
    let keep: Vec<Vec<u8>> = acked.keys().step_by(4).cloned().collect();
    for key in acked.keys().cloned().collect::<Vec<_>>() {
        if !keep.contains(&key) {
            store.delete_range(&key, b"", false).unwrap();
            acked.remove(&key);
        }
    }
    // Compaction alone frees pages inside the file but does not shrink it.
    store.compact(store.current_revision().unwrap()).unwrap();
    store.db().defrag().unwrap();
    let status = store.status().unwrap();
    assert!(status.db_size < QUOTA, "{status:?}");
    store.disarm(Alarm::NoSpace).unwrap();
    assert!(store.alarms().is_empty());
    store.put(b"/after", b"accepted").unwrap();
    acked.insert(b"/after".to_vec(), b"accepted".to_vec());
    assert_eq!(contents(&store), acked);
    store.check().unwrap();

    drop(store);
    let store = open(&path);
    assert!(store.alarms().is_empty());
    assert_eq!(contents(&store), acked);
}

#[test]
fn no_quota_never_raises() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.db"), StoreOptions::new().no_quota()).unwrap();
    for i in 0..200u32 {
        store.put(format!("k{i}").as_bytes(), &[1u8; 8000]).unwrap();
    }
    assert!(store.alarms().is_empty());
    assert_eq!(store.status().unwrap().quota, None);
}

#[test]
fn other_alarms_persist_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.db");
    let store = open(&path);
    store.raise_alarm(Alarm::Corrupt).unwrap();
    drop(store);
    let store = open(&path);
    assert_eq!(store.alarms(), [Alarm::Corrupt]);
    // CORRUPT does not refuse writes by itself (etcd refuses them at the
    // server, above the store).
    store.put(b"k", b"v").unwrap();
    store.disarm(Alarm::Corrupt).unwrap();
    drop(store);
    assert!(open(&path).alarms().is_empty());
}

/// Pages freed by compaction are reused: under a steady overwrite workload
/// compacted after every round, the database stops growing.
#[test]
fn compaction_keeps_a_steady_workload_from_growing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("kv.db"), StoreOptions::new().no_quota()).unwrap();
    let round = |r: u32| {
        let reqs =
            (0..300u32).map(|i| put_op(format!("/steady/{i:04}").as_bytes(), &[r as u8; 300]));
        for res in store.write_batch(reqs).unwrap() {
            res.unwrap();
        }
        store.compact(store.current_revision().unwrap()).unwrap();
        store.status().unwrap()
    };
    for r in 0..5 {
        round(r);
    }
    let early = round(5);
    let mut late = early.clone();
    for r in 6..60 {
        late = round(r);
    }
    eprintln!(
        "db size after 6 rounds: {}, after 60: {}",
        early.db_size, late.db_size
    );
    assert!(
        late.db_size <= early.db_size + early.db_size / 10,
        "the database kept growing: {} -> {}",
        early.db_size,
        late.db_size
    );
    assert!(late.db_size_in_use <= late.db_size);
}

//! The `ops` harness: a sequence of store operations decoded from fuzzer
//! bytes (through the `arbitrary` crate), run against a real store and the
//! reference model of [`super::model`], which must agree on every answer
//! and every error.
//!
//! Keys come from a small alphabet so that operations collide; values are
//! mostly small with some large enough to need overflow pages (the store
//! uses 512-byte pages). Streams and watches are compared with the model's
//! range and event list, compaction and defragmentation run between
//! operations, and reopening drops every in-memory structure.

use std::path::Path;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use super::model::Model;
use crate::mvcc::{
    CommitMode, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest,
    RangeOptions, RangeRequest, RequestOp, Store, StoreOptions, TxnRequest,
};
use crate::stream::{StreamMode, StreamOptions};
use crate::watch::WatchOptions;
use crate::{Durability, Options};

/// Operations per input, at most (bounds each run's time).
const MAX_OPS: usize = 48;

const KEYS: [&[u8]; 10] = [
    b"a",
    b"ab",
    b"abc",
    b"a\0",
    b"b",
    b"ba",
    b"c",
    b"d",
    b"\xff",
    b"\xff\xff",
];

fn key(i: u8) -> Vec<u8> {
    KEYS[i as usize % KEYS.len()].to_vec()
}

/// A range end: one key, every key from the start, or up to another key.
fn end(i: u8) -> Vec<u8> {
    match i % 8 {
        0..=2 => Vec::new(),
        3 => vec![0],
        _ => key(i / 8),
    }
}

fn value(len: u16, fill: u8) -> Vec<u8> {
    // One value in 16 is large: 600 to ~2600 bytes, past a 512-byte page.
    let len = if len % 16 == 15 {
        600 + (len as usize % 2048)
    } else {
        len as usize % 24
    };
    vec![fill; len]
}

/// A revision near the current one: 0 (current), past, the compacted
/// one and below, or the future.
fn revision(m: &Model, back: u8) -> i64 {
    match back % 8 {
        0 => 0,
        7 => m.current + 1,
        b => (m.current - i64::from(back / 8 % 6) * i64::from(b)).max(1),
    }
}

/// One request of a transaction branch.
#[derive(Debug, Arbitrary)]
enum FuzzRequest {
    Range {
        key: u8,
        end: u8,
        limit: u8,
        keys_only: bool,
    },
    Put {
        key: u8,
        len: u16,
        fill: u8,
        prev_kv: bool,
    },
    Delete {
        key: u8,
        end: u8,
        prev_kv: bool,
    },
}

impl FuzzRequest {
    fn to_op(&self) -> RequestOp {
        match *self {
            FuzzRequest::Range {
                key: k,
                end: e,
                limit,
                keys_only,
            } => RequestOp::Range(RangeRequest {
                key: key(k),
                range_end: end(e),
                options: RangeOptions {
                    limit: i64::from(limit % 4),
                    keys_only,
                    ..Default::default()
                },
            }),
            FuzzRequest::Put {
                key: k,
                len,
                fill,
                prev_kv,
            } => RequestOp::Put(PutRequest {
                key: key(k),
                value: value(len, fill),
                lease: 0,
                prev_kv,
            }),
            FuzzRequest::Delete {
                key: k,
                end: e,
                prev_kv,
            } => RequestOp::DeleteRange(DeleteRangeRequest {
                key: key(k),
                range_end: end(e),
                prev_kv,
            }),
        }
    }
}

/// One operation on the store.
#[derive(Debug, Arbitrary)]
enum FuzzOp {
    Put {
        key: u8,
        len: u16,
        fill: u8,
        lease: bool,
        prev_kv: bool,
    },
    Delete {
        key: u8,
        end: u8,
        prev_kv: bool,
    },
    Range {
        key: u8,
        end: u8,
        back: u8,
        limit: u8,
        count_only: bool,
        keys_only: bool,
        filter: u8,
    },
    Txn {
        compares: Vec<(u8, u8, u8, u8)>,
        success: Vec<FuzzRequest>,
        failure: Vec<FuzzRequest>,
    },
    Stream {
        key: u8,
        end: u8,
        back: u8,
        chunk_keys: u8,
        limit: u8,
        keys_only: bool,
        resumable: bool,
    },
    Watch {
        key: u8,
        end: u8,
        back: u8,
        prev_kv: bool,
    },
    Compact {
        back: u8,
    },
    Defrag,
    Reopen,
}

fn compare(&(k, target, op, operand): &(u8, u8, u8, u8)) -> Compare {
    let n = i64::from(operand % 12);
    let target = match target % 5 {
        0 => CompareTarget::Version(n % 4),
        1 => CompareTarget::CreateRevision(n),
        2 => CompareTarget::ModRevision(n),
        3 => CompareTarget::Value(value(u16::from(operand), operand / 16)),
        _ => CompareTarget::Lease(n % 2),
    };
    let result = [
        CompareResult::Equal,
        CompareResult::NotEqual,
        CompareResult::Less,
        CompareResult::Greater,
    ][op as usize % 4];
    Compare {
        key: key(k),
        range_end: if op >= 128 { end(op) } else { Vec::new() },
        target,
        result,
    }
}

/// Runs the operations decoded from `data` on a new store at `path` (any
/// file there is replaced) and on the model; panics, with the step and the
/// operation, at the first disagreement.
pub fn ops(path: &Path, data: &[u8]) {
    // The first byte picks how writes commit: every write durable, or
    // batched (unsynced commits whose pages stay in memory, synced every
    // few writes) with a small in-memory limit, so that pages are also
    // written out between syncs.
    let (mode, unwritten_limit) = match data.first() {
        Some(&b) if b & 1 == 1 => (
            CommitMode::Batched {
                max_writes: 1 + u32::from(b >> 1) % 8,
                // Syncs come from the write count, not the clock.
                max_delay: Duration::from_secs(3600),
            },
            usize::from(b >> 4) * 2048,
        ),
        _ => (CommitMode::Immediate, crate::DEFAULT_UNWRITTEN_LIMIT),
    };
    let mut u = Unstructured::new(data.get(1..).unwrap_or_default());
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS && !u.is_empty() {
        match FuzzOp::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    if std::env::var_os("REVKV_OPS_TRACE").is_some() {
        eprintln!("{ops:#?}");
    }
    let _ = std::fs::remove_file(path);
    let open = || {
        let durability = match mode {
            CommitMode::Immediate => Durability::Immediate,
            CommitMode::Batched { .. } => Durability::None,
        };
        Options::new()
            .page_size(512)
            .durability(durability)
            .unwritten_limit(unwritten_limit)
            .open(path)
            .and_then(|db| Store::with_db(db, StoreOptions::new().commit_mode(mode)))
            .unwrap_or_else(|e| panic!("opening the store at {}: {e}", path.display()))
    };
    let mut store = open();
    let mut m = Model::new();
    for (step, op) in ops.iter().enumerate() {
        if let FuzzOp::Reopen = op {
            // The old handle must be gone before the file is opened again.
            drop(store);
            store = open();
        } else {
            run_op(&store, &mut m, op, step);
        }
        assert_eq!(
            store.current_revision().unwrap(),
            m.current,
            "step {step}: {op:?}"
        );
    }
    final_check(&store, &m);
}

fn run_op(store: &Store, m: &mut Model, op: &FuzzOp, step: usize) {
    let ctx = || format!("step {step}: {op:?}");
    match *op {
        FuzzOp::Put {
            key: k,
            len,
            fill,
            lease,
            prev_kv,
        } => {
            let req = PutRequest {
                key: key(k),
                value: value(len, fill),
                lease: i64::from(lease),
                prev_kv,
            };
            let got = store.put_with(req.clone()).map_err(|e| e.kind());
            let want = m.put(&req.key, &req.value, req.lease, prev_kv);
            assert_eq!(got, want, "{}", ctx());
        }
        FuzzOp::Delete {
            key: k,
            end: e,
            prev_kv,
        } => {
            let got = store
                .delete_range(&key(k), &end(e), prev_kv)
                .map_err(|e| e.kind());
            let want = m.delete_range(&key(k), &end(e), prev_kv);
            assert_eq!(got, want, "{}", ctx());
        }
        FuzzOp::Range {
            key: k,
            end: e,
            back,
            limit,
            count_only,
            keys_only,
            filter,
        } => {
            let f = i64::from(filter % 8);
            let req = RangeRequest {
                key: key(k),
                range_end: end(e),
                options: RangeOptions {
                    revision: revision(m, back),
                    limit: i64::from(limit % 5),
                    count_only,
                    keys_only,
                    min_mod_revision: if filter & 8 != 0 { f } else { 0 },
                    max_mod_revision: if filter & 16 != 0 { f + 2 } else { 0 },
                    min_create_revision: if filter & 32 != 0 { f } else { 0 },
                    max_create_revision: if filter & 64 != 0 { f + 3 } else { 0 },
                },
            };
            let got = store
                .range(&req.key, &req.range_end, &req.options)
                .map_err(|e| e.kind());
            assert_eq!(got, m.range(&req), "{}", ctx());
        }
        FuzzOp::Txn {
            ref compares,
            ref success,
            ref failure,
        } => {
            let req = TxnRequest {
                compare: compares.iter().take(4).map(compare).collect(),
                success: success.iter().take(6).map(FuzzRequest::to_op).collect(),
                failure: failure.iter().take(6).map(FuzzRequest::to_op).collect(),
            };
            let got = store.txn(req.clone()).map_err(|e| e.kind());
            assert_eq!(got, m.txn(&req), "{}", ctx());
        }
        FuzzOp::Stream {
            key: k,
            end: e,
            back,
            chunk_keys,
            limit,
            keys_only,
            resumable,
        } => {
            let rev = revision(m, back);
            let opts = StreamOptions::new()
                .mode(if resumable {
                    StreamMode::Resumable
                } else {
                    StreamMode::Pinned
                })
                .revision(rev)
                .chunk_keys(usize::from(chunk_keys % 4) + 1)
                .limit(u64::from(limit % 6))
                .keys_only(keys_only);
            let got = store.range_stream(&key(k), &end(e), opts).and_then(|s| {
                let mut kvs = Vec::new();
                for chunk in s {
                    kvs.extend(chunk?.to_kvs());
                }
                Ok(kvs)
            });
            let want = m.range(&RangeRequest {
                key: key(k),
                range_end: end(e),
                options: RangeOptions {
                    revision: rev,
                    limit: i64::from(limit % 6),
                    keys_only,
                    ..Default::default()
                },
            });
            assert_eq!(got.map_err(|e| e.kind()), want.map(|r| r.kvs), "{}", ctx());
        }
        FuzzOp::Watch {
            key: k,
            end: e,
            back,
            prev_kv,
        } => {
            // From a revision after the compacted one up to the next one;
            // below the compacted one the watch must be refused.
            let start = (m.current + 1 - i64::from(back % 8)).max(1);
            let opts = WatchOptions::new().start_revision(start).prev_kv(prev_kv);
            let watcher = store.watch(&key(k), &end(e), opts);
            if start < m.compacted {
                let err = watcher.err().map(|e| e.kind());
                assert_eq!(err, Some(crate::ErrorKind::Compacted), "{}", ctx());
                return;
            }
            if start == m.compacted {
                // A deletion at the compacted revision itself is gone, as in
                // etcd; the model keeps it, so this start is not compared.
                return;
            }
            let mut watcher = watcher.unwrap_or_else(|e| panic!("{}: {e}", ctx()));
            let mut got = Vec::new();
            while watcher.next_revision() <= m.current {
                match watcher.try_recv() {
                    Ok(Some(resp)) => {
                        for ev in resp.events {
                            got.push((ev.event.kind, ev.event.kv.clone(), ev.prev_kv));
                        }
                    }
                    // Nothing in range: the watcher must still move past
                    // every revision it read.
                    Ok(None) if watcher.next_revision() > m.current => {}
                    Ok(None) => panic!(
                        "{}: no response and still at revision {} of {}",
                        ctx(),
                        watcher.next_revision(),
                        m.current
                    ),
                    Err(e) => panic!("{}: {e}", ctx()),
                }
            }
            let want: Vec<_> = m
                .events(start, &key(k), &end(e))
                .into_iter()
                .map(|(kind, kv, prev)| (kind, kv, if prev_kv { prev } else { None }))
                .collect();
            assert_eq!(got, want, "{}", ctx());
        }
        FuzzOp::Compact { back } => {
            let rev = match back % 8 {
                0 => m.current + 1,
                b => m.current - i64::from(b) + 1,
            };
            let got = store.compact(rev).map(|_| ()).map_err(|e| e.kind());
            assert_eq!(got, m.compact(rev), "{}", ctx());
            assert_eq!(
                store.compacted_revision().unwrap(),
                m.compacted,
                "{}",
                ctx()
            );
            // The history hash counts what compaction keeps.
            assert_eq!(
                store.hash_kv(0).map(|h| h.hash).map_err(|e| e.kind()),
                m.hash_kv(0),
                "{}: history hash",
                ctx()
            );
        }
        FuzzOp::Defrag => {
            store
                .db()
                .defrag()
                .unwrap_or_else(|e| panic!("{}: {e}", ctx()));
        }
        FuzzOp::Reopen => unreachable!("reopening is done by the caller"),
    }
}

/// Every revision still readable agrees in full; the check passes and
/// holds exactly the versions compaction should have kept.
fn final_check(store: &Store, m: &Model) {
    for rev in m.compacted.max(1)..=m.current {
        let req = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            options: RangeOptions {
                revision: rev,
                ..Default::default()
            },
        };
        let got = store
            .range(&req.key, &req.range_end, &req.options)
            .map_err(|e| e.kind());
        assert_eq!(got, m.range(&req), "final read at revision {rev}");
    }
    let stored = store.check().unwrap_or_else(|e| panic!("final check: {e}"));
    assert_eq!(
        stored,
        m.stored_versions(),
        "versions kept after compaction to {}",
        m.compacted
    );
    store
        .db()
        .check()
        .unwrap_or_else(|e| panic!("final file check: {e}"));
}

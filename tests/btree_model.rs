//! Model-based property test of the storage core: random sequences of
//! inserts, removes, point reads, range reads (both directions), commits,
//! aborts and reopens, checked step by step against a `BTreeMap` per table.
//! After every commit and reopen the whole file is verified with
//! `Db::check`, so a leaked or doubly used page fails the test at once.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use revkv::{Db, Durability, Options, TxnRead};

type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Debug, Clone)]
enum Op {
    Insert {
        table: u8,
        key: Vec<u8>,
        len: usize,
        fill: u8,
    },
    Remove {
        table: u8,
        key: Vec<u8>,
    },
    Get {
        table: u8,
        key: Vec<u8>,
    },
    Range {
        table: u8,
        start: Option<Vec<u8>>,
        end: Option<Vec<u8>>,
        inclusive: bool,
        reverse: bool,
    },
    Commit,
    Abort,
    Reopen,
    DropTable {
        table: u8,
    },
    /// Commit, then defragment online with tiny batches.
    Defrag,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // A small alphabet so keys collide, share prefixes and cluster.
    prop_oneof![
        proptest::collection::vec(
            prop_oneof![Just(b'a'), Just(b'b'), Just(0u8), Just(0xffu8)],
            1..6
        ),
        (0u32..400).prop_map(|i| format!("k{i:05}").into_bytes()),
        proptest::collection::vec(any::<u8>(), 1..60),
    ]
}

fn value_len() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..40, 2 => 40usize..300, 1 => 300usize..5000]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0u8..3, key(), value_len(), any::<u8>()).prop_map(|(table, key, len, fill)| Op::Insert { table, key, len, fill }),
        12 => (0u8..3, key()).prop_map(|(table, key)| Op::Remove { table, key }),
        6 => (0u8..3, key()).prop_map(|(table, key)| Op::Get { table, key }),
        6 => (0u8..3, proptest::option::of(key()), proptest::option::of(key()), any::<bool>(), any::<bool>())
            .prop_map(|(table, start, end, inclusive, reverse)| Op::Range { table, start, end, inclusive, reverse }),
        5 => Just(Op::Commit),
        1 => Just(Op::Abort),
        1 => Just(Op::Reopen),
        1 => (0u8..3).prop_map(|table| Op::DropTable { table }),
        1 => Just(Op::Defrag),
    ]
}

fn name(t: u8) -> String {
    format!("table-{t}")
}

fn value(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

fn run(ops: Vec<Op>, page_size: u32, durability: Durability) -> Result<(), TestCaseError> {
    run_with(ops, page_size, durability, revkv::DEFAULT_UNWRITTEN_LIMIT)
}

fn run_with(
    ops: Vec<Op>,
    page_size: u32,
    durability: Durability,
    unwritten_limit: usize,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let open = || {
        Options::new()
            .page_size(page_size)
            .durability(durability)
            .unwritten_limit(unwritten_limit)
            .open(&path)
            .unwrap()
    };
    let mut db = open();
    let mut committed: Model = Model::new();
    let mut working = committed.clone();
    let mut w = db.begin_write().unwrap();
    for (step, op) in ops.into_iter().enumerate() {
        let ctx = format!("step {step}: {op:?}");
        match op {
            Op::Insert {
                table,
                key,
                len,
                fill,
            } => {
                let t = w.open_table(&name(table)).unwrap();
                let v = value(len, fill);
                let existed = w.insert(t, &key, &v).unwrap();
                let model = working.entry(name(table)).or_default();
                prop_assert_eq!(existed, model.insert(key, v).is_some(), "{}", ctx);
            }
            Op::Remove { table, key } => {
                let t = w.open_table(&name(table)).unwrap();
                let model = working.entry(name(table)).or_default();
                prop_assert_eq!(
                    w.remove(t, &key).unwrap(),
                    model.remove(&key).is_some(),
                    "{}",
                    ctx
                );
            }
            Op::Get { table, key } => {
                let t = w.open_table(&name(table)).unwrap();
                working.entry(name(table)).or_default();
                let want = working[&name(table)].get(&key).map(|v| v.as_slice());
                prop_assert_eq!(w.get(t, &key).unwrap(), want, "{}", ctx);
                // A read snapshot shows the last commit, not the open write.
                let r = db.begin_read().unwrap();
                let got = match r.open_table(&name(table)) {
                    Ok(rt) => r.get(rt, &key).unwrap().map(|v| v.to_vec()),
                    Err(e) => {
                        prop_assert_eq!(e.kind(), revkv::ErrorKind::TableNotFound, "{}", ctx);
                        None
                    }
                };
                let want = committed
                    .get(&name(table))
                    .and_then(|m| m.get(&key))
                    .cloned();
                prop_assert_eq!(got, want, "{} (snapshot)", ctx);
            }
            Op::Range {
                table,
                start,
                end,
                inclusive,
                reverse,
            } => {
                let t = w.open_table(&name(table)).unwrap();
                let model = working.entry(name(table)).or_default();
                let lo = start.as_deref().map_or(Bound::Unbounded, Bound::Included);
                let hi = match (&end, inclusive) {
                    (None, _) => Bound::Unbounded,
                    (Some(e), true) => Bound::Included(e.as_slice()),
                    (Some(e), false) => Bound::Excluded(e.as_slice()),
                };
                let valid = match (&start, &end) {
                    (Some(s), Some(e)) => s < e || (inclusive && s == e),
                    _ => true,
                };
                let want: Vec<(Vec<u8>, Vec<u8>)> = if valid {
                    model
                        .range::<[u8], _>((lo, hi))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                } else {
                    Vec::new()
                };
                let iter = w.range(t, lo, hi).unwrap();
                let mut got: Vec<(Vec<u8>, Vec<u8>)> = if reverse {
                    iter.rev()
                        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
                        .collect::<Result<_, _>>()
                        .unwrap()
                } else {
                    iter.map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
                        .collect::<Result<_, _>>()
                        .unwrap()
                };
                if reverse {
                    got.reverse();
                }
                prop_assert_eq!(got, want, "{}", ctx);
            }
            Op::Commit => {
                w.commit().unwrap();
                committed = working.clone();
                check(&db, &committed, &ctx)?;
                w = db.begin_write().unwrap();
            }
            Op::Abort => {
                drop(w);
                working = committed.clone();
                check(&db, &committed, &ctx)?;
                w = db.begin_write().unwrap();
            }
            Op::Reopen => {
                drop(w);
                drop(db);
                working = committed.clone();
                db = open();
                check(&db, &committed, &ctx)?;
                w = db.begin_write().unwrap();
            }
            Op::Defrag => {
                w.commit().unwrap();
                committed = working.clone();
                db.defrag_with(&revkv::DefragOptions::new().batch_pages(5))
                    .unwrap();
                check(&db, &committed, &ctx)?;
                w = db.begin_write().unwrap();
            }
            Op::DropTable { table } => {
                let existed = w.delete_table(&name(table)).unwrap();
                let had = working.remove(&name(table)).is_some();
                // Opening a table for reading or writing creates it in the
                // working model too, so the two agree on existence.
                prop_assert_eq!(existed, had, "{}", ctx);
            }
        }
    }
    w.commit().unwrap();
    if std::env::var_os("REVKV_MODEL_STATS").is_some() {
        let s = db.stats();
        eprintln!(
            "model run: {} tables, {} pages, txid {}",
            working.len(),
            s.allocated_pages,
            s.txid
        );
    }
    check(&db, &working, "final commit")?;
    drop(db);
    check(&open(), &working, "final reopen")
}

/// The committed state of `db` equals `model` and the file checks clean.
fn check(db: &Db, model: &Model, ctx: &str) -> Result<(), TestCaseError> {
    let report = db
        .check()
        .map_err(|e| TestCaseError::fail(format!("{ctx}: check failed: {e}")))?;
    let r = db.begin_read().unwrap();
    let mut names = r.table_names().unwrap();
    names.sort();
    let want_names: Vec<String> = model.keys().cloned().collect();
    prop_assert_eq!(&names, &want_names, "{}: table names", ctx);
    for (name, m) in model {
        let t = r.open_table(name).unwrap();
        prop_assert_eq!(
            r.table_len(t).unwrap(),
            m.len() as u64,
            "{}: len of {}",
            ctx,
            name
        );
        let got: Vec<(Vec<u8>, Vec<u8>)> = r
            .range(t, Bound::Unbounded, Bound::Unbounded)
            .unwrap()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<(Vec<u8>, Vec<u8>)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert!(
            got == want,
            "{}: contents of {} differ ({} vs {} entries)",
            ctx,
            name,
            got.len(),
            want.len()
        );
    }
    prop_assert!(
        report.tables.len() == model.len(),
        "{}: check saw {} tables",
        ctx,
        report.tables.len()
    );
    Ok(())
}

fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    eprintln!("btree_model: proptest seed byte {seed} ({cases} cases)");
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

#[test]
fn matches_btreemap_small_pages() {
    let mut runner = runner(96, 1);
    runner
        .run(&proptest::collection::vec(op(), 1..400), |ops| {
            run(ops, 512, Durability::Immediate)
        })
        .unwrap();
}

#[test]
fn matches_btreemap_default_pages_unsynced() {
    let mut runner = runner(32, 2);
    runner
        .run(&proptest::collection::vec(op(), 1..600), |ops| {
            run(ops, 4096, Durability::None)
        })
        .unwrap();
}

/// Unsynced commits whose pages mostly do not fit the in-memory limit:
/// every few commits write the held pages out without a sync.
#[test]
fn matches_btreemap_small_pages_unsynced_written_out() {
    let mut runner = runner(48, 4);
    runner
        .run(&proptest::collection::vec(op(), 1..400), |ops| {
            run_with(ops, 512, Durability::None, 4096)
        })
        .unwrap();
}

#[test]
fn matches_btreemap_long_sequences() {
    // Fewer, longer runs: trees several levels deep, many merges.
    let mut runner = runner(8, 3);
    runner
        .run(&proptest::collection::vec(op(), 2000..5000), |ops| {
            run(ops, 512, Durability::Immediate)
        })
        .unwrap();
}

/// An overwrite in key order (a new version inserted just before each old
/// one, as the revision store's `kv` table receives a full overwrite of a
/// prefix) must leave full pages, as appends do: the leaves it has passed
/// take cells from the overflowing leaf after them instead of splitting.
/// Even splits alone left two of three 1000-byte cells per 4 KiB page.
#[test]
fn an_in_order_overwrite_fills_pages() {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new()
        .page_size(4096)
        .open(dir.path().join("db"))
        .unwrap();
    let n = 600u32;
    let value = vec![7u8; 1000];
    let key = |i: u32, version: u8| {
        let mut k = format!("/registry/pods/p{i:06}").into_bytes();
        k.push(version);
        k
    };
    let mut w = db.begin_write().unwrap();
    let t = w.open_table("kv").unwrap();
    for i in 0..n {
        w.insert(t, &key(i, 1), &value).unwrap();
    }
    w.commit().unwrap();
    let loaded = db.stats().bytes_in_use;
    let mut w = db.begin_write().unwrap();
    let t = w.open_table("kv").unwrap();
    for i in 0..n {
        w.insert(t, &key(i, 0), &value).unwrap();
    }
    w.commit().unwrap();
    db.check().unwrap();
    let overwritten = db.stats().bytes_in_use;
    // Three cells per page: twice the cells, at most 10% more than twice
    // the pages (branches and metas are a handful).
    assert!(
        overwritten * 10 <= loaded * 22,
        "{overwritten} bytes in use after the overwrite, {loaded} before"
    );
    let r = db.begin_read().unwrap();
    let t = r.open_table("kv").unwrap();
    for i in 0..n {
        for version in [0, 1] {
            assert_eq!(r.get(t, &key(i, version)).unwrap(), Some(&value[..]));
        }
    }
}

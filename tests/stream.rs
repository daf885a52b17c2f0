//! Range streams: for random stores, revisions, ranges and chunk limits, the
//! chunks concatenated equal the unary range at the same revision, in both
//! modes; and so they stay while writes, compactions and defragmentation run
//! (pinned: unchanged; resumable: unchanged or the compacted error).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use revkv::mvcc::{KeyValue, RangeOptions, Store, StoreOptions};
use revkv::stream::{ResumeToken, StreamMode, StreamOptions};
use revkv::ErrorKind;

fn collect(
    store: &Store,
    key: &[u8],
    end: &[u8],
    opts: StreamOptions,
) -> revkv::Result<(Vec<KeyValue>, u64)> {
    let mut out = Vec::new();
    let mut counted = 0;
    for chunk in store.range_stream(key, end, opts)? {
        let chunk = chunk?;
        counted += chunk.count;
        out.extend(chunk.to_kvs());
    }
    Ok((out, counted))
}

#[derive(Debug, Clone)]
struct Case {
    writes: Vec<(u8, u16, bool)>,
    compact_at: Option<u8>,
    rev_back: u8,
    start: u8,
    end: Option<u8>,
    chunk_keys: usize,
    chunk_bytes: usize,
    adaptive: bool,
    resumable: bool,
    limit: u64,
    keys_only: bool,
    min_mod: i64,
    /// Changes made between chunks, one list per chunk boundary.
    between: Vec<Vec<Change>>,
}

/// A change made while a stream is open.
#[derive(Debug, Clone)]
enum Change {
    Put(u8, u16),
    Delete(u8),
    /// Compact to this many revisions below the current one.
    Compact(u8),
    Defrag,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => (0u8..60, 0u16..600).prop_map(|(k, l)| Change::Put(k, l)),
        2 => (0u8..60).prop_map(Change::Delete),
        1 => (0u8..20).prop_map(Change::Compact),
        1 => Just(Change::Defrag),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec((0u8..60, 0u16..600, prop::bool::weighted(0.15)), 1..150),
        prop::option::of(0u8..100),
        0u8..40,
        0u8..60,
        prop::option::of(0u8..64),
        1usize..40,
        prop_oneof![Just(1usize), 64usize..2000, Just(1 << 20)],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![3 => Just(0u64), 1 => 1u64..30],
        any::<bool>(),
        (
            prop_oneof![3 => Just(0i64), 1 => 1i64..80],
            proptest::collection::vec(proptest::collection::vec(change(), 0..4), 0..12),
        ),
    )
        .prop_map(
            |(
                writes,
                compact_at,
                rev_back,
                start,
                end,
                chunk_keys,
                chunk_bytes,
                adaptive,
                resumable,
                limit,
                keys_only,
                (min_mod, between),
            )| Case {
                writes,
                compact_at,
                rev_back,
                start,
                end,
                chunk_keys,
                chunk_bytes,
                adaptive,
                resumable,
                limit,
                keys_only,
                min_mod,
                between,
            },
        )
}

/// Applies the changes scheduled after chunk `n`.
fn change_store(store: &Store, c: &Case, n: usize) {
    for ch in c.between.get(n).into_iter().flatten() {
        match *ch {
            Change::Put(i, len) => {
                store.put(&k(i), &vec![i ^ 0x5a; len as usize]).unwrap();
            }
            Change::Delete(i) => {
                store.delete_range(&k(i), b"", false).unwrap();
            }
            Change::Compact(back) => {
                let cur = store.current_revision().unwrap();
                let at = cur - back as i64;
                if at > store.compacted_revision().unwrap() {
                    store.compact(at).unwrap();
                }
            }
            Change::Defrag => {
                store
                    .db()
                    .defrag_with(&revkv::DefragOptions::new().batch_pages(3))
                    .unwrap();
            }
        }
    }
}

fn k(i: u8) -> Vec<u8> {
    format!("/k/{i:02}").into_bytes()
}

fn run(c: Case) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), StoreOptions::new().page_size(512)).unwrap();
    for (i, len, delete) in &c.writes {
        if *delete {
            store.delete_range(&k(*i), b"", false).unwrap();
        } else {
            store.put(&k(*i), &vec![*i; *len as usize]).unwrap();
        }
    }
    let current = store.current_revision().unwrap();
    if let Some(at) = c.compact_at {
        let at = 1 + at as i64 % current;
        if at > 1 {
            store.compact(at).unwrap();
        }
    }
    let compacted = store.compacted_revision().unwrap();
    let rev = (current - c.rev_back as i64).max(compacted).max(1);
    let (start, end) = (k(c.start), c.end.map(k).unwrap_or_else(|| vec![0]));
    let unary = store
        .range(
            &start,
            &end,
            &RangeOptions {
                revision: rev,
                keys_only: c.keys_only,
                min_mod_revision: c.min_mod,
                ..Default::default()
            },
        )
        .unwrap();
    let mut want = unary.kvs;
    if c.limit > 0 {
        want.truncate(c.limit as usize);
    }
    // count_only streams count what the unary range counts.
    let unlimited = store
        .range(
            &start,
            &end,
            &RangeOptions {
                revision: rev,
                count_only: true,
                ..Default::default()
            },
        )
        .unwrap();
    let (_, counted) = collect(
        &store,
        &start,
        &end,
        StreamOptions::new()
            .revision(rev)
            .count_only(true)
            .chunk_keys(c.chunk_keys),
    )
    .unwrap();
    prop_assert_eq!(counted as i64, unlimited.count);
    let opts = StreamOptions::new()
        .revision(rev)
        .chunk_keys(c.chunk_keys)
        .chunk_bytes(c.chunk_bytes)
        .adaptive(c.adaptive)
        .limit(c.limit)
        .keys_only(c.keys_only)
        .min_mod_revision(c.min_mod)
        .mode(if c.resumable {
            StreamMode::Resumable
        } else {
            StreamMode::Pinned
        });
    let mut stream = store.range_stream(&start, &end, opts.clone()).unwrap();
    let mut got = Vec::new();
    let mut tokens = 0;
    let mut chunks = 0;
    loop {
        // The store changes between chunks: a pinned stream must not
        // notice; a resumable one may only fail with the compacted error.
        change_store(&store, &c, chunks);
        chunks += 1;
        let chunk = match stream.next_chunk() {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                prop_assert!(c.resumable, "a pinned stream failed: {}", e);
                prop_assert_eq!(e.kind(), ErrorKind::Compacted, "{}", e);
                prop_assert!(store.compacted_revision().unwrap() > rev);
                prop_assert_eq!(&want[..got.len()], &got[..], "before the error");
                return Ok(());
            }
        };
        prop_assert_eq!(chunk.revision, rev);
        prop_assert!(
            chunk.len() <= c.chunk_keys,
            "chunk of {} keys, limit {}",
            chunk.len(),
            c.chunk_keys
        );
        // About chunk_bytes: never more than one key-value past it.
        let biggest = chunk
            .iter()
            .map(|kv| kv.key.len() + kv.value.len())
            .max()
            .unwrap_or(0);
        prop_assert!(chunk.bytes() <= c.chunk_bytes + biggest);
        got.extend(chunk.to_kvs());
        // Every few chunks, continue through a token, as a client would.
        if let Some(t) = stream.token() {
            tokens += 1;
            if tokens % 3 == 0 {
                let t = ResumeToken::from_bytes(&t.to_bytes()).unwrap();
                stream = match store.resume_stream(&t, opts.clone()) {
                    Ok(s) => s,
                    Err(e) => {
                        // Resuming after compaction passed the revision.
                        prop_assert_eq!(e.kind(), ErrorKind::Compacted, "{}", e);
                        prop_assert_eq!(&want[..got.len()], &got[..], "before the error");
                        return Ok(());
                    }
                };
            }
        }
    }
    prop_assert_eq!(got, want);
    Ok(())
}

#[test]
fn chunks_concatenate_to_the_unary_range() {
    eprintln!("stream: ChaCha seed [11; 32]");
    let config = Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]));
    runner.run(&case(), run).unwrap();
}

#[test]
fn streams_hold_while_the_store_changes_underneath() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), StoreOptions::new()).unwrap();
    let key = |i: u32| format!("/registry/pods/ns-{:02}/p{i:05}", i % 7).into_bytes();
    for i in 0..5000u32 {
        store.put(&key(i), &[i as u8; 100]).unwrap();
    }
    let rev = store.current_revision().unwrap();
    let end = revkv::mvcc::prefix_end(b"/registry/");
    let want = store
        .range(
            b"/registry/",
            &end,
            &RangeOptions {
                revision: rev,
                ..Default::default()
            },
        )
        .unwrap()
        .kvs;
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (s, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) || n < 300 {
                s.put(&key(n % 5000), b"new").unwrap();
                if n.is_multiple_of(7) {
                    s.delete_range(&key((n * 3) % 5000), b"", false).unwrap();
                }
                if n % 100 == 99 {
                    let cur = s.current_revision().unwrap();
                    s.compact(cur - 5).unwrap();
                    s.db().defrag().unwrap();
                }
                n += 1;
            }
        })
    };
    // Pinned: exactly the revision's contents, whatever happens meanwhile.
    let pinned = StreamOptions::new().revision(rev).chunk_keys(97);
    let mut got = Vec::new();
    for chunk in store.range_stream(b"/registry/", &end, pinned).unwrap() {
        got.extend(chunk.unwrap().to_kvs());
        std::thread::yield_now();
    }
    assert_eq!(got, want);
    // Resumable: the same contents, or the compacted error once compaction
    // passes the stream's revision, which it may have done before the
    // stream is opened (the churn compacts every hundred writes, however
    // long the pinned stream above took); never anything else.
    let resumable = StreamOptions::new()
        .revision(rev)
        .chunk_keys(97)
        .mode(StreamMode::Resumable);
    let mut got = Vec::new();
    let mut outcome = Ok(());
    match store.range_stream(b"/registry/", &end, resumable) {
        Ok(stream) => {
            for chunk in stream {
                match chunk {
                    Ok(c) => got.extend(c.to_kvs()),
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
        }
        Err(e) => outcome = Err(e),
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    match outcome {
        Ok(()) => assert_eq!(got, want),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Compacted, "{e}");
            assert_eq!(
                &want[..got.len()],
                &got[..],
                "what came before the error was right"
            );
        }
    }
    store.check().unwrap();
}

#[test]
fn pinned_streams_show_in_metrics_and_release_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), StoreOptions::new()).unwrap();
    for i in 0..300u32 {
        store.put(format!("k{i:04}").as_bytes(), &[0; 200]).unwrap();
    }
    let mut s = store
        .range_stream(b"k", b"l", StreamOptions::new().chunk_keys(10))
        .unwrap();
    s.next_chunk().unwrap().unwrap();
    let m = store.stream_metrics().snapshot();
    assert_eq!((m.opened, m.pinned), (1, 1));
    assert!(m.oldest_pinned.is_some());
    // The pinned snapshot keeps pages of overwritten keys from reuse.
    for i in 0..300u32 {
        store.put(format!("k{i:04}").as_bytes(), &[1; 200]).unwrap();
    }
    assert!(store.db().stats().pinned_pages > 0);
    drop(s);
    let m = store.stream_metrics().snapshot();
    assert_eq!((m.pinned, m.abandoned), (0, 1));
    let n: usize = store
        .range_stream(b"k", b"l", StreamOptions::new())
        .unwrap()
        .map(|c| c.unwrap().len())
        .sum();
    assert_eq!(n, 300);
    let m = store.stream_metrics().snapshot();
    assert_eq!(m.finished, 1);
    assert!(m
        .prometheus()
        .contains("etcd_request_duration_seconds_count{operation=\"listStream\"} 2"));
    // A compacted revision fails at open, and counts as failed.
    store.compact(store.current_revision().unwrap()).unwrap();
    let err = store
        .range_stream(b"k", b"l", StreamOptions::new().revision(2))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Compacted);
    assert_eq!(store.stream_metrics().snapshot().failed, 1);
}

#[test]
fn first_chunk_is_small_and_adapts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), StoreOptions::new()).unwrap();
    for i in 0..2000u32 {
        store.put(format!("k{i:05}").as_bytes(), &[7; 100]).unwrap();
    }
    let sizes: Vec<usize> = store
        .range_stream(
            b"k",
            b"l",
            StreamOptions::new().chunk_keys(500).chunk_bytes(16 << 10),
        )
        .unwrap()
        .map(|c| c.unwrap().len())
        .collect();
    assert_eq!(sizes[0], 10, "etcd starts at 10 keys");
    assert_eq!(sizes[1], 20);
    // Settles near 16 KiB of 106-byte entries, never past 500 keys.
    assert!(sizes.iter().all(|&n| n <= 500));
    assert!(
        sizes
            .iter()
            .skip(5)
            .take(3)
            .all(|&n| (80..=320).contains(&n)),
        "{sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), 2000);
}

//! A stream over a large range holds one chunk plus a constant: measured
//! with a counting allocator, not assumed. The first chunk costs the same
//! however large the range is.

use revkv::mvcc::{prefix_end, PutRequest, RequestOp, Store, StoreOptions, TxnRequest};
use revkv::stream::{StreamMode, StreamOptions};

mod alloc;

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

fn fill(store: &Store, n: u32) {
    let value = vec![0x5a; 1024];
    let mut i = 0;
    while i < n {
        let end = (i + 5000).min(n);
        let reqs = (i..end).map(|j| TxnRequest {
            success: vec![RequestOp::Put(PutRequest {
                key: format!("/registry/pods/ns-{:04}/pod-{j:08}", j % 1000).into_bytes(),
                value: value.clone(),
                ..Default::default()
            })],
            ..Default::default()
        });
        for r in store.write_batch(reqs).unwrap() {
            r.unwrap();
        }
        i = end;
    }
}

/// Streams the whole prefix and returns (peak bytes allocated above the
/// level before the stream opened, bytes streamed).
fn stream_peak(store: &Store, opts: StreamOptions) -> (isize, usize) {
    let base = alloc::start();
    let mut bytes = 0;
    for chunk in store
        .range_stream(b"/registry/pods/", &prefix_end(b"/registry/pods/"), opts)
        .unwrap()
    {
        bytes += chunk.unwrap().bytes();
    }
    (alloc::peak_since(base), bytes)
}

#[test]
fn memory_is_one_chunk_whatever_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), StoreOptions::new()).unwrap();
    fill(&store, 60_000);
    let chunk = 256 << 10;
    for mode in [StreamMode::Pinned, StreamMode::Resumable] {
        let opts = StreamOptions::new()
            .chunk_bytes(chunk)
            .chunk_keys(100_000)
            .mode(mode);
        let (peak, bytes) = stream_peak(&store, opts);
        eprintln!(
            "{mode:?}: streamed {} MB with a peak of {} KiB allocated",
            bytes >> 20,
            peak >> 10
        );
        assert!(bytes > 60 << 20, "the whole range was streamed");
        // One chunk (plus one entry past the target), its entry index, and
        // a constant for the cursor and the snapshot.
        let bound = 2 * chunk as isize + (256 << 10);
        assert!(peak < bound, "{mode:?}: peak {peak} bytes, bound {bound}");
    }
    // The unary range of the same prefix materializes everything.
    let base = alloc::start();
    let all = store
        .range(
            b"/registry/pods/",
            &prefix_end(b"/registry/pods/"),
            &Default::default(),
        )
        .unwrap();
    let unary_peak = alloc::peak_since(base);
    assert_eq!(all.kvs.len(), 60_000);
    assert!(unary_peak > 60 << 20, "unary range peak {unary_peak}");
}

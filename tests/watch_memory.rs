//! A stalled watcher never stalls the writer and never makes the process
//! buffer without bound: while it reads nothing, the writer writes far more
//! than the feed keeps (measured with a counting allocator); then the
//! watcher catches up from the revision log and sees every event once.

use revkv::mvcc::{prefix_end, EventKind, PutRequest, RequestOp, Store, StoreOptions, TxnRequest};
use revkv::watch::WatchOptions;

mod alloc;

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

#[test]
fn a_stalled_watcher_costs_bounded_memory_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    // Durable commits: no unsynced pages held in memory to muddy the count.
    let store = Store::open(dir.path().join("s"), StoreOptions::new().no_quota()).unwrap();
    let prefix = b"/registry/pods/";
    let mut watcher = store
        .watch(
            prefix,
            &prefix_end(prefix),
            WatchOptions::new().max_events(500),
        )
        .unwrap();
    let base = alloc::start();
    // 40,000 revisions of 1 KiB values: 40 MB of changes, five times what
    // the feed keeps, while the watcher reads nothing.
    let value = vec![0x42u8; 1024];
    let n = 40_000u32;
    let mut i = 0;
    while i < n {
        let end = (i + 500).min(n);
        let reqs = (i..end).map(|j| TxnRequest {
            success: vec![RequestOp::Put(PutRequest {
                key: format!("/registry/pods/ns-{:03}/p{j:06}", j % 100).into_bytes(),
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
    let peak = alloc::peak_since(base);
    eprintln!(
        "peak allocated while the watcher stalled: {} KiB for {} KiB written",
        peak / 1024,
        n
    );
    // The feed's 8 MiB, a batch's requests and pages, and slack; never the
    // 40 MB written.
    assert!(peak < 24 << 20, "peak {peak} bytes");

    // Catching up: every event once, in order, partly from the log.
    let mut seen = 0u32;
    let mut last = 0;
    while seen < n {
        let r = watcher.recv().unwrap();
        for e in r.events {
            assert_eq!(e.event.kind, EventKind::Put);
            assert!(e.event.kv.mod_revision > last);
            last = e.event.kv.mod_revision;
            seen += 1;
        }
    }
    assert_eq!(seen, n);
    let m = store.watch_metrics();
    assert!(m.catchup_reads > 0, "{m:?}");
    assert_eq!(
        m.slow_watchers, 0,
        "caught up: reading the feed again ({m:?})"
    );
    assert_eq!(m.events, n as u64);
}

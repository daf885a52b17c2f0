//! A tour: the storage core (write in one transaction, read a snapshot
//! while the writer goes on, reopen, check), then the revision store on top
//! of it (etcd-style puts and revisions, a list streamed in chunks at one
//! revision, a watch from the next revision on, the status with its quota).
//!
//! Run with `cargo run --release --example quickstart`.

use std::ops::Bound;
use std::time::Instant;

use revkv::{Db, Durability, Options, TxnRead};

fn main() -> Result<(), revkv::Error> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("quickstart.db");
    let n = 200_000u32;

    let db = Options::new().durability(Durability::None).open(&path)?;
    let t0 = Instant::now();
    let mut w = db.begin_write()?;
    let pods = w.open_table("pods")?;
    for i in 0..n {
        let key = format!("/registry/pods/ns-{:04}/pod-{:08}", i % 1000, i);
        w.insert(pods, key.as_bytes(), &[b'x'; 1024])?;
    }
    w.commit()?;
    db.sync()?;
    println!("loaded {n} keys of 1 KiB in {:.2?}", t0.elapsed());

    let snapshot = db.begin_read()?;
    let mut w = db.begin_write()?;
    let pods_w = w.open_table("pods")?;
    w.remove(pods_w, b"/registry/pods/ns-0000/pod-00000000")?;
    w.commit()?;

    let t = snapshot.open_table("pods")?;
    let t1 = Instant::now();
    let (mut keys, mut bytes) = (0u64, 0u64);
    for entry in snapshot.range(
        t,
        Bound::Included(&b"/registry/pods/"[..]),
        Bound::Excluded(&b"/registry/pods0"[..]),
    )? {
        let (k, v) = entry?;
        keys += 1;
        bytes += (k.len() + v.len()) as u64;
    }
    println!(
        "the old snapshot still sees {keys} keys ({:.1} MB) after the delete, scanned in {:.2?}",
        bytes as f64 / 1e6,
        t1.elapsed()
    );
    drop(snapshot);
    drop(db);

    let t2 = Instant::now();
    let db = Db::open(&path)?;
    println!("reopened in {:.2?}", t2.elapsed());
    let report = db.check()?;
    let stats = db.stats();
    println!(
        "check: {} pages reachable, {} free; file {:.1} MB, {:.1} MB in use",
        report.reachable_pages,
        report.free_pages,
        stats.file_size as f64 / 1e6,
        stats.bytes_in_use as f64 / 1e6
    );
    drop(db);
    revision_store(&dir.path().join("store.db"))
}

/// The revision store: what a Kubernetes-style API server would do.
fn revision_store(path: &std::path::Path) -> Result<(), revkv::Error> {
    use revkv::mvcc::{prefix_end, PutRequest, RequestOp, Store, StoreOptions, TxnRequest};
    use revkv::stream::StreamOptions;
    use revkv::watch::WatchOptions;

    let store = Store::open(path, StoreOptions::new())?;
    let pods = (0..20_000u32).map(|i| TxnRequest {
        success: vec![RequestOp::Put(PutRequest {
            key: format!("/registry/pods/ns-{:02}/pod-{i:06}", i % 50).into_bytes(),
            value: vec![b'p'; 512],
            ..Default::default()
        })],
        ..Default::default()
    });
    for r in store.write_batch(pods)? {
        r?;
    }
    println!(
        "store: 20000 pods written, one revision each: revision {}",
        store.current_revision()?
    );

    // List-then-watch, as a watch cache fills itself: stream the prefix at
    // one revision in chunks (memory: one chunk), then watch from the next.
    let prefix = b"/registry/pods/";
    let end = prefix_end(prefix);
    let t = Instant::now();
    let stream = store.range_stream(prefix, &end, StreamOptions::new().chunk_keys(500))?;
    let listed_at = stream.revision();
    let (mut chunks, mut listed) = (0, 0);
    for chunk in stream {
        chunks += 1;
        listed += chunk?.len();
    }
    println!(
        "listed {listed} pods at revision {listed_at} in {chunks} chunks in {:.2?}",
        t.elapsed()
    );
    let mut watcher = store.watch(
        prefix,
        &end,
        WatchOptions::new().start_revision(listed_at + 1),
    )?;
    store.put(b"/registry/pods/ns-00/pod-new", b"{}")?;
    store.delete_range(b"/registry/pods/ns-01/pod-000001", b"", false)?;
    let mut events = Vec::new();
    while events.len() < 2 {
        for e in watcher.recv()?.events {
            events.push(format!(
                "{:?} {} @{}",
                e.event.kind,
                String::from_utf8_lossy(&e.event.kv.key),
                e.event.revision()
            ));
        }
    }
    println!("watch from {}: {}", listed_at + 1, events.join(", "));

    // Old revisions stay readable until compacted.
    store.compact(listed_at)?;
    let status = store.status()?;
    println!(
        "status: revision {}, compacted at {}, database {:.1} MB ({:.1} MB in use), quota {:.0} MB, alarms {:?}",
        status.revision,
        status.compacted_revision,
        status.db_size as f64 / 1e6,
        status.db_size_in_use as f64 / 1e6,
        status.quota.unwrap_or(0) as f64 / 1e6,
        status.alarms
    );
    Ok(())
}

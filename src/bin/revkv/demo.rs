//! `revkv demo`: the project in one command. Builds a Kubernetes-like
//! keyspace, then shows at a glance a unary range against a stream, an
//! overwrite + compaction + defragmentation cycle, and the quota alarm
//! raised by a write and cleared again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use revkv::mvcc::{
    prefix_end, CommitMode, DeleteRangeRequest, PutRequest, RangeOptions, RequestOp, Store,
    StoreOptions, TxnRequest,
};
use revkv::quota::Alarm;
use revkv::stream::StreamOptions;

use crate::bench::{key, Rng, PREFIX};
use crate::{heap, progress};

const BATCH: u64 = 5_000;
const EVENTS: &[u8] = b"/registry/events/";

fn put(key: Vec<u8>, value: Vec<u8>) -> TxnRequest {
    TxnRequest {
        success: vec![RequestOp::Put(PutRequest {
            key,
            value,
            ..Default::default()
        })],
        ..Default::default()
    }
}

/// Writes value `round` of every key, in batches, with a progress bar.
fn write_all(
    store: &Store,
    keys: u64,
    value_bytes: usize,
    round: u64,
    what: &str,
) -> revkv::Result<()> {
    let bar = progress::bar(keys, what);
    let mut value = vec![0u8; value_bytes];
    Rng::new(round).fill(&mut value);
    let mut i = 0;
    while i < keys {
        let end = (i + BATCH).min(keys);
        for r in store.write_batch((i..end).map(|j| put(key(j), value.clone())))? {
            r?;
        }
        bar.set_position(end);
        i = end;
    }
    store.sync()?;
    bar.finish_and_clear();
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn time(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else if d < Duration::from_secs(10) {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn sizes(store: &Store) -> revkv::Result<(String, String)> {
    let s = store.status()?;
    Ok((mib(s.file_size), mib(s.db_size_in_use)))
}

/// Runs the demo on `db` (a new file, kept) or in a temporary directory.
pub fn run(db: Option<&Path>, keys: u64, value_bytes: usize) -> revkv::Result<()> {
    let mut _cleanup = None;
    let path: PathBuf = match db {
        Some(p) => {
            if p.exists() {
                return Err(revkv::Error::InvalidOption(format!(
                    "{} already exists: the demo builds a new database (remove it or pick another --db)",
                    p.display()
                )));
            }
            p.to_path_buf()
        }
        None => {
            let dir = tempfile_dir()?;
            let path = dir.join("demo.db");
            _cleanup = Some(RemoveOnDrop(dir));
            path
        }
    };
    let keys = keys.max(1);
    println!(
        "revkv demo: {keys} pod-like keys with {value_bytes}-byte values in {}\n",
        path.display()
    );
    let batched = StoreOptions::new()
        .no_quota()
        .commit_mode(CommitMode::Batched {
            max_writes: 10_000,
            max_delay: Duration::from_millis(50),
        });
    let store = Store::open(&path, batched.clone())?;
    let t = Instant::now();
    write_all(&store, keys, value_bytes, 1, "loading")?;
    let load = t.elapsed();

    // 1. A list of the whole prefix: unary against streamed.
    let end = prefix_end(PREFIX);
    heap::reset_peak();
    let base = heap::live();
    let t = Instant::now();
    let mut stream = store.range_stream(PREFIX, &end, StreamOptions::new())?;
    let (mut first, mut streamed, mut chunks) = (None, 0u64, 0u64);
    while let Some(chunk) = stream.next_chunk()? {
        first.get_or_insert_with(|| t.elapsed());
        streamed += chunk.len() as u64;
        chunks += 1;
    }
    let stream_total = t.elapsed();
    drop(stream);
    let stream_peak = heap::peak().saturating_sub(base);

    heap::reset_peak();
    let base = heap::live();
    let t = Instant::now();
    let unary = store.range(PREFIX, &end, &RangeOptions::default())?;
    let unary_total = t.elapsed();
    let unary_keys = unary.kvs.len() as u64;
    drop(unary);
    let unary_peak = heap::peak().saturating_sub(base);
    assert_eq!(
        unary_keys, streamed,
        "the stream and the range list the same keys"
    );

    println!(
        "{:<38}{:>12}   {:>9}   {:>11}",
        format!("listing all {keys} keys"),
        "first key",
        "all keys",
        "peak memory"
    );
    println!(
        "  {:<36}{:>12}   {:>9}   {:>11}",
        "unary range (one answer)",
        time(unary_total),
        time(unary_total),
        mib(unary_peak as u64)
    );
    println!(
        "  {:<36}{:>12}   {:>9}   {:>11}\n",
        format!("stream ({chunks} chunks)"),
        time(first.unwrap_or_default()),
        time(stream_total),
        mib(stream_peak as u64)
    );

    // 2. Overwrite, compact, defragment: space comes back.
    println!(
        "{:<38}{:>9}   {:>10}   {:>10}",
        "space lifecycle", "time", "file size", "in use"
    );
    let (f, u) = sizes(&store)?;
    row(&format!("load {keys} keys"), load, &f, &u);
    let t = Instant::now();
    write_all(&store, keys, value_bytes, 2, "overwriting")?;
    let (f, u) = sizes(&store)?;
    row("overwrite every key", t.elapsed(), &f, &u);
    let rev = store.current_revision()?;
    let spin = progress::spinner("compacting");
    let t = Instant::now();
    store.compact(rev)?;
    spin.finish_and_clear();
    let (f, u) = sizes(&store)?;
    row(&format!("compact to revision {rev}"), t.elapsed(), &f, &u);
    let spin = progress::spinner("defragmenting");
    let t = Instant::now();
    let report = store.db().defrag()?;
    spin.finish_and_clear();
    let (f, u) = sizes(&store)?;
    row(
        &format!("defragment (online, {} batches)", report.batches),
        t.elapsed(),
        &f,
        &u,
    );
    println!();
    let db_size = store.status()?.db_size;
    drop(store);

    // 3. The quota: a write that would pass it raises NOSPACE and is
    // refused; reads go on; deleting, compacting and defragmenting make
    // room, and disarming lets writes in again.
    let quota = db_size + (4 << 20);
    let store = Store::open(&path, StoreOptions::new().quota_bytes(quota))?;
    println!("quota alarm (quota {})", mib(quota));
    let value = vec![b'e'; value_bytes];
    let mut accepted = 0u64;
    let refusal = loop {
        let batch = (accepted..accepted + 100).map(|i| {
            put(
                format!("/registry/events/e-{i:08}").into_bytes(),
                value.clone(),
            )
        });
        let mut refused = None;
        let results = match store.write_batch(batch) {
            Ok(results) => results,
            Err(e) if e.kind() == revkv::ErrorKind::NoSpace => break e,
            Err(e) => return Err(e),
        };
        for r in results {
            match r {
                Ok(_) => accepted += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = refused {
            break e;
        }
    };
    let alarms: Vec<String> = store.alarms().iter().map(|a| a.to_string()).collect();
    println!("  {accepted} event writes accepted, then: {refusal}");
    println!("  alarm list: {}", alarms.join(", "));
    let read = store.range(
        PREFIX,
        &end,
        &RangeOptions {
            count_only: true,
            ..Default::default()
        },
    )?;
    println!("  reads still served: {} keys counted", read.count);
    store.txn(TxnRequest {
        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            key: EVENTS.to_vec(),
            range_end: prefix_end(EVENTS),
            prev_kv: false,
        })],
        ..Default::default()
    })?;
    store.compact(store.current_revision()?)?;
    store.db().defrag()?;
    store.disarm(Alarm::NoSpace)?;
    let ok = store.put(b"/registry/events/after", &value)?;
    println!(
        "  events deleted, compacted, defragmented, alarm disarmed: the next put is accepted at revision {}",
        ok.header.revision
    );
    drop(store);
    if db.is_some() {
        println!("\nthe database is kept at {}", path.display());
    }
    Ok(())
}

/// The demo's temporary directory, removed however the demo ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn row(step: &str, took: Duration, file: &str, in_use: &str) {
    println!("  {step:<36}{:>9}   {file:>10}   {in_use:>10}", time(took));
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> revkv::Result<PathBuf> {
    let base = std::env::temp_dir();
    for attempt in 0..1000u32 {
        let dir = base.join(format!("revkv-demo-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(revkv::Error::InvalidOption(format!(
                    "creating a directory in {}: {e}",
                    base.display()
                )))
            }
        }
    }
    Err(revkv::Error::InvalidOption(format!(
        "no free directory name in {}",
        base.display()
    )))
}

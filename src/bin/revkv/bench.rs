//! `revkv bench PHASE`: the phases of the etcd peer program
//! (../shared/peers), same workload, same JSON fields, so both engines can
//! be measured side by side in one run.

use std::path::Path;
use std::time::Instant;

use revkv::mvcc::{
    prefix_end, CommitMode, Compare, CompareResult, CompareTarget, PutRequest, RangeOptions,
    RequestOp, Store, StoreOptions, TxnRequest,
};

pub const PREFIX: &[u8] = b"/registry/pods/";

/// The workload's key for object `i`.
pub fn key(i: u64) -> Vec<u8> {
    format!("/registry/pods/ns-{:04}/pod-{:08}", i % 1000, i).into_bytes()
}

/// A small deterministic generator (xorshift64*), so runs are repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// A value from /proc/self/status in KiB.
pub fn status_kb(field: &str) -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1)
}

/// Bytes this process has handed to write calls so far (`wchar` of
/// /proc/self/io), or -1 where the kernel does not say. The write-side gaps
/// to etcd are mostly bytes written (docs/benchmarks.md), so every phase
/// reports its own. The disk may receive less: a page written twice before
/// writeback goes out once. (`write_bytes`, which counts pages as they are
/// dirtied, is no better: with large page-cache folios it counts a whole
/// folio for a 4 KiB write, 39 GB for a compaction that wrote 2.6 GB.)
pub fn written_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(-1)
}

/// Resets the peak-RSS counter so the next VmHWM is the peak from now.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One JSON line, fields in the given order.
pub struct Line(Vec<(String, String)>);

impl Line {
    pub fn new() -> Line {
        Line(Vec::new())
    }
    pub fn num(&mut self, k: &str, v: impl std::fmt::Display) -> &mut Line {
        self.0.push((k.to_string(), v.to_string()));
        self
    }
    pub fn str(&mut self, k: &str, v: &str) -> &mut Line {
        self.0.push((k.to_string(), format!("\"{v}\"")));
        self
    }
    pub fn print(&self) {
        let body: Vec<String> = self.0.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        println!("{{{}}}", body.join(","));
    }
}

fn whole() -> Vec<u8> {
    prefix_end(PREFIX)
}

fn count(store: &Store) -> revkv::Result<u64> {
    Ok(store
        .range(
            PREFIX,
            &whole(),
            &RangeOptions {
                count_only: true,
                ..Default::default()
            },
        )?
        .count as u64)
}

/// Runs one phase; `args` are the phase's own arguments.
pub fn run(db: &Path, phase: &str, args: &[u64]) -> revkv::Result<()> {
    let arg = |i: usize, def: u64| args.get(i).copied().unwrap_or(def);
    let t_open = Instant::now();
    // Writes are batched like etcd's backend: synced at the end of the phase.
    // No quota: the etcd peer runs its mvcc store without one too.
    let opts = StoreOptions::new()
        .no_quota()
        .commit_mode(CommitMode::Batched {
            max_writes: 10_000,
            max_delay: std::time::Duration::from_millis(100),
        });
    let store = Store::open(db, opts)?;
    let open_s = t_open.elapsed().as_secs_f64();
    let mut line = Line::new();
    line.str("engine", "revkv")
        .str("phase", phase)
        .num("open_s", open_s)
        .num("rss_after_open_kb", status_kb("VmRSS"));
    reset_peak();
    let base = status_kb("VmRSS");
    let written_before = written_bytes();
    let txid_before = store.db().stats().txid;
    let mut t0 = Instant::now();
    match phase {
        "load" => {
            let (n, vs) = (arg(0, 100_000), arg(1, 1024) as usize);
            let mut value = vec![0u8; vs];
            Rng::new(7).fill(&mut value);
            let bar = crate::progress::bar(n, "loading");
            put_all(&store, n, &value, |done| bar.set_position(done))?;
            store.sync()?;
            bar.finish_and_clear();
            line.num("ops", n);
        }
        "open" => {}
        "range" => {
            let r = store.range(PREFIX, &whole(), &RangeOptions::default())?;
            let bytes: usize = r.kvs.iter().map(|kv| kv.key.len() + kv.value.len()).sum();
            line.num("keys", r.kvs.len()).num("bytes", bytes);
        }
        "stream" => {
            // The whole prefix as a stream of CHUNK_KEYS-key chunks: time to
            // the first chunk, then the rest; memory is one chunk.
            let chunk_keys = arg(0, 500) as usize;
            let opts = revkv::stream::StreamOptions::new().chunk_keys(chunk_keys).adaptive(false).chunk_bytes(usize::MAX);
            let mut stream = store.range_stream(PREFIX, &whole(), opts)?;
            let (mut keys, mut bytes, mut chunks) = (0usize, 0usize, 0usize);
            let mut first_chunk_s = 0.0;
            while let Some(chunk) = stream.next_chunk()? {
                if chunks == 0 {
                    first_chunk_s = t0.elapsed().as_secs_f64();
                }
                chunks += 1;
                keys += chunk.len();
                bytes += chunk.bytes();
            }
            let full = t0.elapsed();
            // Then the first chunk of 21 more streams from random keys in
            // the same process (a server's steady state: page tables and
            // allocator warm, the pages themselves not read before).
            let total = keys as u64;
            let mut rng = Rng::new(3);
            let mut warm: Vec<f64> = (0..21)
                .map(|_| -> revkv::Result<f64> {
                    let t = Instant::now();
                    let opts = revkv::stream::StreamOptions::new().chunk_keys(chunk_keys).adaptive(false).chunk_bytes(usize::MAX);
                    let mut s = store.range_stream(&key(rng.below(total)), &whole(), opts)?;
                    s.next_chunk()?;
                    Ok(t.elapsed().as_secs_f64())
                })
                .collect::<revkv::Result<_>>()?;
            warm.sort_by(f64::total_cmp);
            // "s" stays the time of the full stream.
            t0 = Instant::now() - full;
            line.num("keys", keys)
                .num("bytes", bytes)
                .num("first_chunk_s", first_chunk_s)
                .num("first_chunk_warm_median_s", per_mille(&warm, 500))
                .num("chunks", chunks);
        }
        "watch" => {
            // `watch WATCHERS PUTS THREADS PACE_MS ROUNDS TOGETHER`; see
            // `watch_phase`.
            let watchers = arg(0, 1000) as usize;
            let setup = WatchBench {
                watchers,
                puts: arg(1, 20_000),
                threads: (arg(2, 1) as usize).clamp(1, watchers.max(1)),
                pace: std::time::Duration::from_millis(arg(3, 0)),
                rounds: arg(4, 3) as usize,
                together: arg(5, 1) == 1,
            };
            watch_phase(&store, &mut line, &setup)?;
        }
        "streams" => {
            // N concurrent full streams (ten by default), one thread each.
            let n = arg(0, 10) as usize;
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let store = store.clone();
                    std::thread::spawn(move || -> revkv::Result<usize> {
                        let opts = revkv::stream::StreamOptions::new().chunk_keys(500).adaptive(false).chunk_bytes(usize::MAX);
                        let mut bytes = 0;
                        for c in store.range_stream(PREFIX, &whole(), opts)? {
                            bytes += c?.bytes();
                        }
                        Ok(bytes)
                    })
                })
                .collect();
            let mut bytes = 0;
            for h in handles {
                bytes += h.join().expect("stream thread")?;
            }
            line.num("streams", n).num("bytes", bytes);
        }
        "first" => {
            let r = store.range(
                PREFIX,
                &whole(),
                &RangeOptions {
                    limit: 500,
                    ..Default::default()
                },
            )?;
            line.num("keys", r.kvs.len());
        }
        "paged" => {
            let limit = arg(0, 500) as i64;
            let rev = store.current_revision()?;
            let mut start = PREFIX.to_vec();
            let (mut n, mut pages) = (0usize, 0usize);
            loop {
                let opts = RangeOptions {
                    limit,
                    revision: rev,
                    ..Default::default()
                };
                let r = store.range(&start, &whole(), &opts)?;
                n += r.kvs.len();
                pages += 1;
                if (r.kvs.len() as i64) < limit || r.kvs.is_empty() {
                    break;
                }
                start = r.kvs.last().expect("a full page").key.clone();
                start.push(0);
            }
            line.num("keys", n).num("pages", pages);
        }
        "get" => {
            let m = arg(0, 100_000);
            let total = count(&store)?;
            let mut rng = Rng::new(1);
            t0 = Instant::now();
            let mut found = 0;
            for _ in 0..m {
                found += store
                    .range(&key(rng.below(total)), b"", &RangeOptions::default())?
                    .kvs
                    .len();
            }
            line.num("ops", m).num("found", found);
        }
        "overwrite" => {
            // The first step of churn alone.
            let n = overwrite_all(&store, arg(0, 1024) as usize)?;
            line.num("ops", n);
        }
        "compact" => {
            // The second step of churn alone.
            let s = store.db().stats();
            line.num("in_use_before_compact", s.bytes_in_use);
            // The heap it takes: plans, dirty pages, unwritten pages.
            crate::heap::reset_peak();
            let base = crate::heap::live();
            compact_to_head(&store)?;
            let s = store.db().stats();
            line.num("size_after_compact", s.file_size)
                .num("in_use_after_compact", s.bytes_in_use)
                .num("heap_peak_bytes", crate::heap::peak().saturating_sub(base));
        }
        "large" => {
            // Puts of values over a page (overflow runs of several pages)
            // into a file whose free space a compaction has just broken
            // into single pages: every key is overwritten once and the old
            // versions compacted away (no defrag) before the timing starts.
            let (m, vs) = (arg(0, 10_000), arg(1, 16 * 1024) as usize);
            overwrite_all(&store, 1024)?;
            compact_to_head(&store)?;
            let before = store.db().stats();
            let mut value = vec![0u8; vs];
            Rng::new(10).fill(&mut value);
            let mut lat = Vec::with_capacity(m as usize);
            t0 = Instant::now();
            for j in 0..m {
                let t = Instant::now();
                store.put(format!("/large/{j:08}").as_bytes(), &value)?;
                lat.push(t.elapsed().as_secs_f64());
            }
            store.sync()?;
            lat.sort_by(f64::total_cmp);
            line.num("ops", m)
                .num("value_bytes", vs)
                .num("free_pages_before", before.free_pages)
                .num("put_p50_s", per_mille(&lat, 500))
                .num("put_p99_s", per_mille(&lat, 990));
        }
        "txn" => {
            // Optimistic-concurrency update (Kubernetes' GuaranteedUpdate):
            // read, then put only if the key was not modified meanwhile.
            let m = arg(0, 100_000);
            let total = count(&store)?;
            let mut rng = Rng::new(2);
            t0 = Instant::now();
            for _ in 0..m {
                let k = key(rng.below(total));
                let read = store.range(&k, b"", &RangeOptions::default())?;
                let Some(kv) = read.kvs.into_iter().next() else {
                    continue;
                };
                let req = TxnRequest {
                    compare: vec![Compare::new(
                        k.clone(),
                        CompareResult::Equal,
                        CompareTarget::ModRevision(kv.mod_revision),
                    )],
                    success: vec![RequestOp::Put(PutRequest {
                        key: k,
                        value: kv.value,
                        lease: 0,
                        prev_kv: false,
                    })],
                    failure: vec![],
                };
                store.txn(req)?;
            }
            store.sync()?;
            line.num("ops", m);
        }
        "churn" => {
            let n = overwrite_all(&store, arg(0, 1024) as usize)?;
            line.num("overwrite_s", t0.elapsed().as_secs_f64());
            let s = store.db().stats();
            line.num("size_before_compact", s.file_size)
                .num("in_use_before_compact", s.bytes_in_use);
            // A prober does a random point get and a small put, in turn, for
            // the rest of the phase, recording each latency by stage: 0 idle
            // (two seconds before compaction), 1 compaction, 2 defrag. With
            // PROBE 0 nothing runs beside compaction and defrag, as in the
            // etcd peer's churn.
            let probing = arg(1, 1) != 0;
            let stage = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let prober = probing.then(|| {
                let (store, stage, stop) = (store.clone(), stage.clone(), stop.clone());
                std::thread::spawn(move || -> revkv::Result<Vec<[Vec<u64>; 2]>> {
                    let mut lat: Vec<[Vec<u64>; 2]> = (0..3).map(|_| [Vec::new(), Vec::new()]).collect();
                    let mut rng = Rng::new(11);
                    let mut i = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let st = stage.load(std::sync::atomic::Ordering::Relaxed);
                        let t = Instant::now();
                        store.range(&key(rng.below(n)), b"", &RangeOptions::default())?;
                        lat[st][0].push(t.elapsed().as_nanos() as u64);
                        let t = Instant::now();
                        store.put(format!("/probe/{:04}", i % 1000).as_bytes(), b"probe")?;
                        lat[st][1].push(t.elapsed().as_nanos() as u64);
                        i += 1;
                    }
                    Ok(lat)
                })
            });
            if probing {
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
            stage.store(1, std::sync::atomic::Ordering::Relaxed);
            // Commits during each stage: every commit of the parked
            // transaction makes the puts after it copy their paths afresh.
            let txid = store.db().stats().txid;
            let t1 = Instant::now();
            compact_to_head(&store)?;
            line.num("compact_s", t1.elapsed().as_secs_f64())
                .num("compact_commits", store.db().stats().txid - txid);
            let s = store.db().stats();
            line.num("size_after_compact", s.file_size)
                .num("in_use_after_compact", s.bytes_in_use);
            stage.store(2, std::sync::atomic::Ordering::Relaxed);
            let txid = store.db().stats().txid;
            let t2 = Instant::now();
            let report = store.db().defrag()?;
            line.num("defrag_s", t2.elapsed().as_secs_f64())
                .num("defrag_commits", store.db().stats().txid - txid)
                .num("defrag_longest_batch_s", report.longest_batch.as_secs_f64())
                .num("defrag_pages_moved", report.pages_moved)
                .num("defrag_batches", report.batches)
                .num("defrag_pinned_pages", report.pinned_pages);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let lat = match prober {
                Some(p) => p.join().expect("the prober thread")?,
                None => Vec::new(),
            };
            for (st, name) in ["idle", "compact", "defrag"]
                .iter()
                .enumerate()
                .take(lat.len())
            {
                for (op, opname) in ["get", "put"].iter().enumerate() {
                    let mut v = lat[st][op].clone();
                    v.sort_unstable();
                    let pct = |pm: usize| per_mille(&v, pm) as f64 / 1e9;
                    line.num(&format!("{opname}_p50_{name}_s"), pct(500))
                        .num(&format!("{opname}_p99_{name}_s"), pct(990))
                        .num(&format!("{opname}_p999_{name}_s"), pct(999))
                        .num(&format!("{opname}_max_{name}_s"), v.last().copied().unwrap_or(0) as f64 / 1e9)
                        .num(&format!("{opname}_n_{name}"), v.len());
                }
            }
            let s = store.db().stats();
            line.num("size_after_defrag", s.file_size)
                .num("in_use_after_defrag", s.bytes_in_use);
            line.num("ops", n);
        }
        other => {
            return Err(revkv::Error::InvalidOption(format!(
                "unknown bench phase {other:?} (load, open, range, stream, streams, first, paged, get, txn, churn, overwrite, compact, large)"
            )))
        }
    }
    line.num("s", t0.elapsed().as_secs_f64());
    line.num("peak_rss_delta_kb", status_kb("VmHWM") - base);
    if written_before >= 0 {
        line.num("written_bytes", written_bytes() - written_before);
    }
    let s = store.db().stats();
    line.num("db_size", s.file_size)
        .num("commits", s.txid - txid_before);
    line.print();
    Ok(())
}

/// The value `per_mille` thousandths of the way through `sorted` (500:
/// the median), or zero when it is empty.
fn per_mille<T: Copy + Default>(sorted: &[T], per_mille: usize) -> T {
    sorted
        .get(sorted.len() * per_mille / 1000)
        .copied()
        .unwrap_or_default()
}

/// Puts a new value of `value_bytes` under every key the bench loaded
/// (the churn's overwrite) and syncs. Returns the number of keys.
fn overwrite_all(store: &Store, value_bytes: usize) -> revkv::Result<u64> {
    let n = count(store)?;
    let mut value = vec![0u8; value_bytes];
    Rng::new(9).fill(&mut value);
    put_all(store, n, &value, |_| {})?;
    store.sync()?;
    Ok(n)
}

/// Compacts to the current revision, waits for it and syncs.
fn compact_to_head(store: &Store) -> revkv::Result<()> {
    store.compact(store.current_revision()?)?;
    store.sync()
}

/// Puts `value` under keys 0..n in write batches of 10,000 (etcd's
/// backend batch limit), telling `progress` the keys done after each.
fn put_all(
    store: &Store,
    n: u64,
    value: &[u8],
    mut progress: impl FnMut(u64),
) -> revkv::Result<()> {
    let mut i = 0;
    while i < n {
        let end = (i + 10_000).min(n);
        for r in store.write_batch((i..end).map(|j| put_request(key(j), value.to_vec())))? {
            r?;
        }
        progress(end);
        i = end;
    }
    Ok(())
}

fn put_request(key: Vec<u8>, value: Vec<u8>) -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(PutRequest {
            key,
            value,
            lease: 0,
            prev_kv: false,
        })],
        failure: vec![],
    }
}

/// The watch phase: WATCHERS watchers on a prefix while one writer puts PUTS
/// 1 KiB values under it (5000 keys, overwritten round after round) as fast
/// as it can. After a round that creates the keys, ROUNDS pairs of rounds
/// alternate the writer alone and the writer watched (fresh watchers from
/// the round's first revision, served by THREADS threads that wait once for
/// the revision to move and then pull from their watchers, as a server
/// multiplexes streams: all at once with `Watcher::try_visit_all` when
/// TOGETHER is 1 (the default), else one `try_visit` each; optionally at
/// most one pass per PACE).
/// Alternating rounds keep the file's drift from round to round out of the
/// ratio. Reports median writer rates, their ratio, and the
/// commit-to-delivery delay sampled on every 10th event of every 10th
/// watcher.
/// The watch phase's arguments.
struct WatchBench {
    watchers: usize,
    puts: u64,
    threads: usize,
    pace: std::time::Duration,
    rounds: usize,
    together: bool,
}

fn watch_phase(store: &Store, line: &mut Line, setup: &WatchBench) -> revkv::Result<()> {
    let &WatchBench {
        watchers,
        puts,
        threads,
        pace,
        rounds,
        together,
    } = setup;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::Duration;
    let prefix = b"/registry/watched/".to_vec();
    let end = prefix_end(&prefix);
    let value = vec![7u8; 1024];
    let origin = Instant::now();
    // Puts the round's values; stamps[rev - base] records when each put
    // returned, for the delay samples.
    let run_writer = |stamps: &[AtomicU64], base: i64| -> revkv::Result<f64> {
        let t = Instant::now();
        for i in 0..puts {
            let k = format!("/registry/watched/{:06}", i % 5000);
            let rev = store.put(k.as_bytes(), &value)?.header.revision;
            if let Some(s) = stamps.get((rev - base) as usize) {
                s.store(origin.elapsed().as_nanos() as u64, Relaxed);
            }
        }
        Ok(puts as f64 / t.elapsed().as_secs_f64())
    };
    run_writer(&[], 0)?; // creates the keys
    let (mut alone, mut watched, mut delays) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        alone.push(run_writer(&[], 0)?);
        let base = store.current_revision()? + 1;
        let stamps: Arc<Vec<AtomicU64>> = Arc::new((0..puts).map(|_| AtomicU64::new(0)).collect());
        // Watcher w is in group w % threads, at position w / threads.
        let mut groups: Vec<Vec<revkv::watch::Watcher>> =
            (0..threads).map(|_| Vec::new()).collect();
        for w in 0..watchers {
            let watcher = store.watch(
                &prefix,
                &end,
                revkv::watch::WatchOptions::new().start_revision(base),
            )?;
            groups[w % threads].push(watcher);
        }
        let servers: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(g, mut group)| {
                let (stamps, store) = (stamps.clone(), store.clone());
                std::thread::spawn(move || -> revkv::Result<Vec<u64>> {
                    let mut delays = Vec::new();
                    let mut seen = vec![0u64; group.len()];
                    let mut seen_rev = base - 1;
                    let mut cycle = Instant::now();
                    // Sample every 10th event of every 10th watcher: the
                    // time it is handed over, less the time its put
                    // returned (0 if the writer has not stamped it yet).
                    let mut sample = |pos: usize, e: &revkv::mvcc::Event, count: u64| {
                        if (pos * threads + g).is_multiple_of(10) && count.is_multiple_of(10) {
                            let at = stamps[(e.kv.mod_revision - base) as usize].load(Relaxed);
                            if at > 0 {
                                delays
                                    .push((origin.elapsed().as_nanos() as u64).saturating_sub(at));
                            }
                        }
                    };
                    while seen.iter().any(|&s| s < puts) {
                        if let Some(rest) = pace.checked_sub(cycle.elapsed()) {
                            std::thread::sleep(rest);
                        }
                        cycle = Instant::now();
                        seen_rev = store.wait_revision_past(seen_rev, Duration::from_millis(100));
                        // Events by reference, as a server encoding them
                        // into its connections would take them.
                        if together {
                            revkv::watch::Watcher::try_visit_all(&mut group, |pos, e, _| {
                                seen[pos] += 1;
                                sample(pos, e, seen[pos]);
                            })
                            .map_err(|(_, e)| e)?;
                        } else {
                            for (pos, watcher) in group.iter_mut().enumerate() {
                                // Again only while short of the revision
                                // woken for.
                                while watcher.next_revision() <= seen_rev
                                    && watcher.try_visit(|e, _| {
                                        seen[pos] += 1;
                                        sample(pos, e, seen[pos]);
                                    })? > 0
                                {}
                            }
                        }
                    }
                    Ok(delays)
                })
            })
            .collect();
        watched.push(run_writer(&stamps, base)?);
        for server in servers {
            delays.extend(server.join().expect("a watcher thread")?);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        per_mille(v, 500)
    };
    // Per round, in order, before the medians sort them.
    let rounds_json = |v: &[f64]| {
        format!(
            "[{}]",
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let (alone_rounds, watched_rounds) = (rounds_json(&alone), rounds_json(&watched));
    let (alone_median, watched_median) = (median(&mut alone), median(&mut watched));
    delays.sort_unstable();
    let pct = |pm: usize| per_mille(&delays, pm) as f64 / 1e9;
    let metrics = store.watch_metrics();
    line.num("watchers", watchers)
        .num("threads", threads)
        .num("pace_ms", pace.as_millis())
        .num("together", together)
        .num("puts", puts)
        .num("rounds", rounds)
        .num("writer_alone_puts_per_s", alone_median)
        .num("writer_watched_puts_per_s", watched_median)
        .num(
            "ratio",
            if alone_median > 0.0 {
                watched_median / alone_median
            } else {
                0.0
            },
        )
        .num("delay_p50_s", pct(500))
        .num("delay_p99_s", pct(990))
        .num("delay_samples", delays.len())
        .num("catchup_reads", metrics.catchup_reads)
        .num("alone_rounds_puts_per_s", alone_rounds)
        .num("watched_rounds_puts_per_s", watched_rounds);
    Ok(())
}

//! Replays every input saved under fuzz/regressions/<target>/ (crashes the
//! fuzzers found, kept after the fix) and the seed corpora through the same
//! harness functions the fuzz targets call, on stable Rust.
//!
//! `cargo test --test fuzz_regressions -- --ignored write_seed_corpora`
//! regenerates the seed corpora in fuzz/seeds/ from the crate itself.

use std::path::{Path, PathBuf};

use revkv::Options;

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            out.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn open_file_inputs_replay_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds_opened = 0;
    for kind in ["regressions", "seeds"] {
        for (path, bytes) in inputs(kind, "open_file") {
            eprintln!("replaying {}", path.display());
            let ok = revkv::fuzzing::open_file(&dir.path().join("db"), &bytes);
            if kind == "seeds" && ok {
                seeds_opened += 1;
            }
        }
    }
    assert!(
        seeds_opened > 0,
        "the seed corpus holds databases that open and check clean"
    );
}

#[test]
fn decode_inputs_replay_cleanly() {
    for kind in ["regressions", "seeds"] {
        for (path, bytes) in inputs(kind, "decode") {
            eprintln!("replaying {}", path.display());
            revkv::fuzzing::decode(&bytes);
        }
    }
}

/// Small databases made by the crate: the seed corpus of `open_file`, and
/// their pages, that of `decode`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand when the format changes"]
fn write_seed_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("seeds");
    let dir = tempfile::tempdir().unwrap();
    for (n, (page_size, keys, value)) in [
        (512u32, 20u32, 10usize),
        (512, 200, 30),
        (512, 40, 700),
        (1024, 300, 5),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("seed{n}"));
        let db = Options::new().page_size(page_size).open(&path).unwrap();
        for round in 0..3u32 {
            let mut w = db.begin_write().unwrap();
            let t = w
                .open_table(if round == 2 { "other" } else { "t" })
                .unwrap();
            for i in 0..keys {
                w.insert(
                    t,
                    format!("k{:05}", (i * 31 + round) % keys).as_bytes(),
                    &vec![i as u8; value],
                )
                .unwrap();
            }
            for i in (0..keys).step_by(3) {
                w.remove(t, format!("k{i:05}").as_bytes()).unwrap();
            }
            w.commit().unwrap();
        }
        let pages = db.stats().allocated_pages as usize;
        drop(db);
        // The file grows ahead of use; the seed keeps only allocated pages.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(pages * page_size as usize);
        std::fs::write(root.join("open_file").join(format!("db-{n}")), &bytes).unwrap();
        for (p, page) in bytes.chunks(page_size as usize).enumerate().take(8) {
            std::fs::write(root.join("decode").join(format!("db-{n}-page-{p}")), page).unwrap();
        }
    }
}

/// A small revision store (history, deletions, a compaction, a large
/// value), the seed that leads `open_file` into the store's own reads.
fn small_store(path: &Path) -> Vec<u8> {
    use revkv::mvcc::{Store, StoreOptions};
    let store = Store::open(path, StoreOptions::new().page_size(512)).unwrap();
    for i in 0..40u32 {
        let key = format!("/registry/pods/p{:02}", i % 13);
        store
            .put(key.as_bytes(), &vec![i as u8; 8 + (i as usize % 5) * 3])
            .unwrap();
    }
    store.put(b"/big", &[7u8; 1500]).unwrap();
    store
        .delete_range(b"/registry/pods/p03", b"/registry/pods/p06", false)
        .unwrap();
    store.compact(30).unwrap();
    store.put(b"/after", b"compaction").unwrap();
    let pages = store.db().stats().allocated_pages as usize;
    drop(store);
    let mut bytes = std::fs::read(path).unwrap();
    bytes.truncate(pages * 512);
    bytes
}

/// Fixed pseudo-random inputs (splitmix64): the seeds of `ops`, and the
/// inputs the stable test below runs through the same harness.
fn ops_inputs(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            let len = 32 + (next() % 480) as usize;
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}

#[test]
#[ignore = "writes fuzz/seeds; run by hand when the format changes"]
fn write_store_and_ops_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("seeds");
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_store(&dir.path().join("store"));
    for target in ["open_file", "open_file_unchecked"] {
        std::fs::write(root.join(target).join("store-0"), &bytes).unwrap();
    }
    std::fs::create_dir_all(root.join("ops")).unwrap();
    for (i, input) in ops_inputs(0x5eed, 16).iter().enumerate() {
        std::fs::write(root.join("ops").join(format!("ops-{i:02}")), input).unwrap();
    }
}

#[test]
fn a_store_file_replays_through_open_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_store(&dir.path().join("store"));
    assert!(revkv::fuzzing::open_file(&dir.path().join("copy"), &bytes));
}

#[test]
fn ops_inputs_replay_against_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    for kind in ["regressions", "seeds"] {
        for (file, bytes) in inputs(kind, "ops") {
            eprintln!("replaying {}", file.display());
            revkv::fuzzing::ops(&path, &bytes);
        }
    }
    // REVKV_OPS_INPUTS=N runs more (a soak on stable Rust, without cargo
    // fuzz); REVKV_OPS_SEED picks another sequence.
    let n: usize = std::env::var("REVKV_OPS_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("REVKV_OPS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0dd5_eed5);
    eprintln!("ops: splitmix64 seed {seed:#x}, {n} inputs");
    for (i, input) in ops_inputs(seed, n).iter().enumerate() {
        eprintln!("ops input {i} of seed {seed:#x}");
        revkv::fuzzing::ops(&path, input);
    }
}

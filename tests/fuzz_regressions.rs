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

//! Replays the inputs of the `open_file_unchecked` fuzz target. Its harness
//! switches checksum comparisons off for the whole process, so it runs in a
//! test binary of its own.

use std::path::Path;

#[test]
fn open_file_unchecked_inputs_replay_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for kind in ["regressions", "seeds"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join("open_file_unchecked")) else {
            continue;
        };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            eprintln!("replaying {}", path.display());
            let bytes = std::fs::read(&path).unwrap();
            revkv::fuzzing::open_file_unchecked(&dir.path().join("db"), &bytes);
        }
    }
}

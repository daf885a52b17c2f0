//! Random operation sequences (put, delete, txn, range, stream, watch,
//! compact, defrag, reopen) on a real store, checked step by step against
//! the reference model the MVCC property tests use.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| {
        tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap()
    });
    revkv::fuzzing::ops(&dir.path().join("store"), data);
});

//! Open and fully read a mutated database file with checksums ignored, so
//! that mutations reach the structural checks. Otherwise as open_file:: the result is
//! a working store or a typed error, never a panic, abort, hang, read out of
//! bounds or unbounded allocation.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // Files up to 64 pages of 512 bytes keep each run fast.
    if data.len() > 64 * 4096 {
        return;
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap());
    revkv::fuzzing::open_file_unchecked(&dir.path().join("db"), data);
});

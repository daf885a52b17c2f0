//! Every decoder of an on-disk structure on its own: meta pages, page
//! headers, tree pages (validated, then every accessor), free-list entries,
//! catalog records.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    revkv::fuzzing::decode(data);
});

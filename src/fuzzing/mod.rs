//! Harnesses shared by the fuzz targets in `fuzz/` and the regression tests
//! that replay their findings on stable Rust (feature `fuzzing`).
//!
//! Each harness takes arbitrary bytes and must return without panicking,
//! aborting, hanging or allocating without bound, whatever the bytes.

pub mod model;
mod ops;

pub use ops::ops;

use std::ops::Bound;
use std::path::Path;

use crate::btree::node::{self, Limits, Node, ValueRef};
use crate::storage::meta::{Meta, META_LEN};
use crate::storage::page::{self, Header, HEADER_LEN};
use crate::txn::table::TableRecord;
use crate::{Options, TxnRead};

/// Writes `bytes` to `path` and opens it read-only as a database; if that
/// works, runs the full check and reads every table forward and backward.
/// Returns whether the file opened and checked clean.
pub fn open_file(path: &Path, bytes: &[u8]) -> bool {
    if std::fs::write(path, bytes).is_err() {
        return false;
    }
    let Ok(db) = Options::new().read_only(true).open(path) else {
        return false;
    };
    let checked = db.check().is_ok();
    // Reading must be safe whether or not the check passed.
    if let Ok(r) = db.begin_read() {
        if let Ok(names) = r.table_names() {
            for name in names.iter().take(64) {
                let Ok(t) = r.open_table(name) else { continue };
                if let Ok(it) = r.range(t, Bound::Unbounded, Bound::Unbounded) {
                    for e in it.take(100_000) {
                        if e.is_err() {
                            break;
                        }
                    }
                }
                if let Ok(it) = r.range(t, Bound::Unbounded, Bound::Unbounded) {
                    for e in it.rev().take(100_000) {
                        if e.is_err() {
                            break;
                        }
                    }
                }
                let _ = r.get(t, b"key");
            }
        }
    }
    read_store(db);
    salvage(path);
    checked
}

/// Salvages the file into a new one, which must then be a healthy store.
fn salvage(path: &Path) {
    use crate::mvcc::{Store, StoreOptions};
    let out = path.with_extension("salvaged");
    let _ = std::fs::remove_file(&out);
    if crate::mvcc::Store::salvage(path, &out).is_ok() {
        let store = Store::open(&out, StoreOptions::new().read_only(true))
            .unwrap_or_else(|e| panic!("a salvaged file does not open: {e}"));
        if let Err(e) = store.check().and_then(|_| store.hash_kv(0)) {
            panic!("a salvaged store fails its check: {e}");
        }
    }
    let _ = std::fs::remove_file(&out);
}

/// If the file holds a revision store: its check, a full range, a stream
/// of every key at the current and the oldest revision, the history hash,
/// and a watch replaying the history. Errors are fine; panics are not.
fn read_store(db: crate::Db) {
    use crate::mvcc::{RangeOptions, Store, StoreOptions};
    use crate::stream::StreamOptions;
    let Ok(store) = Store::with_db(db, StoreOptions::new().read_only(true)) else {
        return;
    };
    let _ = store.check();
    let _ = store.status();
    let all = RangeOptions {
        limit: 10_000,
        ..Default::default()
    };
    let _ = store.range(b"\0", b"\0", &all);
    let oldest = store.compacted_revision().unwrap_or(0).max(1);
    for rev in [0, oldest] {
        if let Ok(s) = store.range_stream(
            b"\0",
            b"\0",
            StreamOptions::new().revision(rev).chunk_keys(7),
        ) {
            for chunk in s.take(10_000) {
                if chunk.is_err() {
                    break;
                }
            }
        }
    }
    let _ = store.hash_kv(0);
    if let Ok(mut w) = store.watch(
        b"\0",
        b"\0",
        crate::watch::WatchOptions::new()
            .start_revision(oldest + 1)
            .prev_kv(true),
    ) {
        for _ in 0..10_000 {
            match w.try_recv() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
}

/// Like [`open_file`], with every checksum comparison switched off for the
/// whole process: mutated files then reach the layout, order, bounds and
/// depth checks behind the checksums, which must hold on their own.
pub fn open_file_unchecked(path: &Path, bytes: &[u8]) -> bool {
    crate::storage::page::IGNORE_CHECKSUMS.store(true, std::sync::atomic::Ordering::Relaxed);
    open_file(path, bytes)
}

/// Runs every on-disk decoder on `bytes`: the meta page, the page header,
/// tree-page validation followed by every accessor of a page that passes,
/// free-list entries and catalog records.
pub fn decode(bytes: &[u8]) {
    let _ = Meta::decode(bytes, 0);
    let _ = Meta::decode(bytes, 1);
    if bytes.len() >= META_LEN {
        let _ = Meta::decode(&bytes[..META_LEN], 0);
    }
    let _ = TableRecord::decode(bytes, b"fuzz");
    // Treat the input as one page of each legal size it can fill.
    for ps in [512usize, 1024, 4096] {
        if bytes.len() < ps {
            continue;
        }
        let page = &bytes[..ps];
        let limits = Limits::new(ps);
        let h = Header(page);
        let _ = (
            h.checksum(),
            h.kind_byte(),
            h.count(),
            h.id(),
            h.txid(),
            h.span(),
            h.word(),
        );
        let _ = page::verify_checksum(page, 0);
        if node::validate(page, h.id(), &limits).is_ok() {
            let n = Node::new(page);
            for i in 0..n.count() {
                let _ = n.key(i);
                let _ = n.cell(i);
                if n.is_leaf() {
                    if let ValueRef::Inline(v) = n.value(i) {
                        let _ = v.len();
                    }
                } else {
                    let _ = n.child(i);
                }
            }
            let _ = n.search(b"fuzz");
            if !n.is_leaf() {
                let _ = n.child_index(b"fuzz");
            }
            let _ = n.used();
        }
        // Free-list entries: bounded by the page, never by the claimed count.
        let count = (h.word() as usize).min((ps - HEADER_LEN) / 16);
        for i in 0..count {
            let at = HEADER_LEN + i * 16;
            let _ = (page::read_u64(page, at), page::read_u64(page, at + 8));
        }
    }
}

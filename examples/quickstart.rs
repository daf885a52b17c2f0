//! A tour of the storage core: create a file, write in one transaction,
//! read a snapshot while the writer goes on, reopen, check.
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
    Ok(())
}

//! Real-process crash test: a child process writes in a loop and is killed
//! with SIGKILL at a moment chosen by a seeded generator; every write it
//! acknowledged must be there after reopening, and the file must pass the
//! full check. Twenty rounds on the same file, so recovering an already
//! recovered file is exercised too.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use revkv::mvcc::{RangeOptions, Store, StoreOptions};

const CHILD_ENV: &str = "REVKV_SIGKILL_CHILD_DB";

fn key(k: u64) -> Vec<u8> {
    format!("/acked/{k:08}").into_bytes()
}

fn value(k: u64) -> Vec<u8> {
    // Some values need overflow pages.
    let len = if k.is_multiple_of(17) {
        9000
    } else {
        40 + (k % 300) as usize
    };
    (0..len).map(|i| (k as usize + i) as u8).collect()
}

/// The child: writes until killed, printing each acknowledged write.
#[test]
fn sigkill_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Store::open(&path, StoreOptions::new().compaction_batch(8)).unwrap();
    let start = store
        .range(b"/last", b"", &RangeOptions::default())
        .unwrap();
    let mut k: u64 = start
        .kvs
        .first()
        .map_or(0, |kv| String::from_utf8_lossy(&kv.value).parse().unwrap())
        + 1;
    loop {
        store.put(&key(k), &value(k)).unwrap();
        store.put(b"/last", k.to_string().as_bytes()).unwrap();
        if k.is_multiple_of(5) {
            store.delete_range(&key(k - 3), b"", false).unwrap();
        }
        if k.is_multiple_of(50) {
            store
                .compact(store.current_revision().unwrap() - 20)
                .unwrap();
        }
        if k.is_multiple_of(120) {
            store
                .db()
                .defrag_with(&revkv::DefragOptions::new().batch_pages(16))
                .unwrap();
        }
        println!("acked {k}");
        k += 1;
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let seed = 0xdead_beef_u64;
    eprintln!("sigkill: seed {seed:#x}");
    let mut rng = seed;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut acked_total = 0u64;
    for round in 0..20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait_for = 1 + rng % 150;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last = None;
        let mut seen = 0;
        while seen < wait_for {
            let line = lines
                .next()
                .expect("the child acknowledges writes")
                .unwrap();
            // The first line starts with libtest's "test sigkill_child ... ".
            if let Some((_, k)) = line.rsplit_once("acked ") {
                last = Some(k.parse::<u64>().unwrap());
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();
        // Acknowledgements still in the pipe count too: the child may have
        // acknowledged more writes before the signal landed.
        for line in lines.map_while(Result::ok) {
            if let Some((_, k)) = line.rsplit_once("acked ") {
                last = Some(k.parse::<u64>().unwrap());
                seen += 1;
            }
        }
        let last = last.unwrap();
        acked_total += seen;
        let store = Store::open(&path, StoreOptions::new())
            .unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
        store
            .check()
            .unwrap_or_else(|e| panic!("round {round}: check: {e}"));
        // Every acknowledged write is there (except keys the child itself
        // deleted later), and nothing beyond the write in flight.
        for k in last.saturating_sub(30).max(1)..=last {
            let deleted_by = k + 3;
            if deleted_by % 5 == 0 && deleted_by <= last + 1 {
                continue;
            }
            let got = store.range(&key(k), b"", &RangeOptions::default()).unwrap();
            assert_eq!(
                got.kvs.first().map(|kv| kv.value.clone()),
                Some(value(k)),
                "round {round}: acknowledged write {k} lost"
            );
        }
        let beyond = store
            .range(
                &key(last + 2),
                b"/acked0",
                &RangeOptions {
                    count_only: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            beyond.count, 0,
            "round {round}: writes beyond the one in flight exist"
        );
    }
    eprintln!("sigkill: 20 rounds, {acked_total} acknowledged writes checked");
}

//! `Db::save_snapshot` while a writer commits: the copy shows exactly one
//! commit (never a mix of two), opens, checks clean, and a leftover `.part`
//! file from an interrupted copy is replaced.

use revkv::{Db, TxnRead};

#[test]
fn a_snapshot_taken_during_writes_is_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("live.db")).unwrap();
    let copy_path = dir.path().join("copy.db");
    // A stale partial copy, as a crash in the middle of a copy leaves it.
    std::fs::write(dir.path().join("copy.db.part"), b"garbage").unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            // Commit n writes key n and sets the counter to n, in one table,
            // with values large enough to need overflow pages now and then.
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 50 {
                n += 1;
                let mut w = db.begin_write().unwrap();
                let t = w.open_table("t").unwrap();
                w.insert(
                    t,
                    format!("k{n:06}").as_bytes(),
                    &vec![n as u8; (n % 7) as usize * 900],
                )
                .unwrap();
                w.insert(t, b"counter", &n.to_le_bytes()).unwrap();
                w.commit().unwrap();
            }
            n
        });
        for _ in 0..5 {
            let report = db.save_snapshot(&copy_path).unwrap();
            let copy = Db::open(&copy_path).unwrap();
            copy.check().unwrap();
            let r = copy.begin_read().unwrap();
            let Ok(t) = r.open_table("t") else {
                assert_eq!(report.entries, 0);
                continue;
            };
            let counter = r
                .get(t, b"counter")
                .unwrap()
                .map(|v| u64::from_le_bytes(v.try_into().unwrap()))
                .unwrap();
            // One commit: the counter and the keys agree.
            assert_eq!(r.table_len(t).unwrap(), counter + 1);
            assert_eq!(report.entries, counter + 1);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
    });
    assert!(!dir.path().join("copy.db.part").exists());
    // Over the database itself, by any name: refused.
    let err = db.save_snapshot(dir.path().join("live.db")).unwrap_err();
    assert_eq!(err.kind(), revkv::ErrorKind::InvalidOption);
    let other_spelling = dir.path().join(".").join("live.db");
    let err = db.save_snapshot(&other_spelling).unwrap_err();
    assert_eq!(err.kind(), revkv::ErrorKind::InvalidOption, "{err}");
    std::fs::hard_link(dir.path().join("live.db"), dir.path().join("alias.db")).unwrap();
    let err = db.save_snapshot(dir.path().join("alias.db")).unwrap_err();
    assert_eq!(err.kind(), revkv::ErrorKind::InvalidOption, "{err}");
    // Nor through its temporary file.
    std::fs::hard_link(dir.path().join("live.db"), dir.path().join("x.part")).unwrap();
    let err = db.save_snapshot(dir.path().join("x")).unwrap_err();
    assert_eq!(err.kind(), revkv::ErrorKind::InvalidOption, "{err}");
    assert!(dir.path().join("live.db").exists());
}

use revkv::{Db, Options, TxnRead};
use std::ops::Bound;

#[test]
fn smoke_many_keys_reopen_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Options::new().page_size(512).open(&path).unwrap();
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("t").unwrap();
        for i in 0..5000u32 {
            let k = format!("key{:08}", (i * 7919) % 5000);
            w.insert(t, k.as_bytes(), &vec![i as u8; (i % 300) as usize])
                .unwrap();
        }
        w.insert(t, b"big", &vec![9u8; 100_000]).unwrap();
        w.commit().unwrap();
        db.check().unwrap();
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("t").unwrap();
        for i in 0..4000u32 {
            let k = format!("key{:08}", i);
            assert!(w.remove(t, k.as_bytes()).unwrap());
        }
        w.commit().unwrap();
        let rep = db.check().unwrap();
        assert_eq!(rep.tables, vec![("t".to_string(), 1001)]);
    }
    let db = Db::open(&path).unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    assert_eq!(r.get(t, b"big").unwrap().unwrap().len(), 100_000);
    let n = r
        .range(t, Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .count();
    assert_eq!(n, 1001);
    let back: Vec<_> = r
        .range(t, Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .rev()
        .map(|e| e.unwrap().0.to_vec())
        .collect();
    assert_eq!(back.len(), 1001);
    assert!(back.windows(2).all(|w| w[0] > w[1]));
    db.check().unwrap();
}

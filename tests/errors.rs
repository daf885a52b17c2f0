//! Every typed error of the storage core, with its kind and message.

use revkv::{Db, ErrorKind, Options, TxnRead};

fn tmp() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    (dir, path)
}

#[test]
fn foreign_file_is_not_a_database() {
    let (_d, path) = tmp();
    std::fs::write(&path, vec![0x42u8; 16384]).unwrap();
    let err = Db::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
    std::fs::write(&path, b"short").unwrap();
    assert_eq!(Db::open(&path).unwrap_err().kind(), ErrorKind::NotADatabase);
    std::fs::write(&path, b"").unwrap();
    let err = Options::new().read_only(true).open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
}

#[test]
fn newer_format_version_is_refused() {
    let (_d, path) = tmp();
    drop(Db::open(&path).unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    for slot in 0..2 {
        let m = &mut bytes[slot * 4096..slot * 4096 + 128];
        m[16..20].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32(&m[4..128]);
        m[0..4].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = Db::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion, "{err}");
    assert!(
        err.to_string().contains("unsupported format version 2"),
        "{err}"
    );
}

/// CRC32 (IEEE), bitwise: the test does not trust the crate's own helper.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn page_size_rules() {
    let (_d, path) = tmp();
    let err = Options::new().page_size(1000).open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidOption, "{err}");
    assert!(!path.exists(), "an invalid option must not create the file");
    drop(Options::new().page_size(8192).open(&path).unwrap());
    let err = Options::new().page_size(4096).open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PageSizeMismatch);
    assert_eq!(
        err.to_string(),
        "page size mismatch: the file uses 8192 bytes, the options ask for 4096"
    );
    // Without a page size in the options, the file's is used.
    assert_eq!(Db::open(&path).unwrap().stats().page_size, 8192);
}

#[test]
fn key_and_value_limits() {
    let (_d, path) = tmp();
    let db = Db::open(&path).unwrap();
    let mut w = db.begin_write().unwrap();
    let t = w.open_table("t").unwrap();
    let err = w.insert(t, b"", b"v").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EmptyKey);
    let max = db.max_key_len();
    assert_eq!(max, 976);
    w.insert(t, &vec![b'k'; max], b"v").unwrap();
    let err = w.insert(t, &vec![b'k'; max + 1], b"v").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyTooLarge);
    assert_eq!(
        err.to_string(),
        format!(
            "key of {} bytes exceeds the maximum key size of {max} bytes",
            max + 1
        )
    );
    // Values of 1.5 MiB and more go to overflow pages.
    let big: Vec<u8> = (0..(3 << 19)).map(|i: u32| (i % 253) as u8).collect();
    w.insert(t, b"big", &big).unwrap();
    w.commit().unwrap();
    drop(db);
    let db = Db::open(&path).unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    assert_eq!(r.get(t, b"big").unwrap(), Some(&big[..]));
    db.check().unwrap();
}

#[test]
fn tables_and_handles() {
    let (_d, path) = tmp();
    let db = Db::open(&path).unwrap();
    let r = db.begin_read().unwrap();
    let err = r.open_table("missing").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TableNotFound);
    assert_eq!(err.to_string(), "table \"missing\" does not exist");
    let mut w = db.begin_write().unwrap();
    let t = w.open_table("t").unwrap();
    w.insert(t, b"a", b"1").unwrap();
    w.commit().unwrap();
    let r1 = db.begin_read().unwrap();
    let r2 = db.begin_read().unwrap();
    let t1 = r1.open_table("t").unwrap();
    assert_eq!(
        r2.get(t1, b"a").unwrap_err().kind(),
        ErrorKind::ForeignTable
    );
    assert_eq!(w_err(&db), ErrorKind::InvalidOption);
}

fn w_err(db: &Db) -> ErrorKind {
    let mut w = db.begin_write().unwrap();
    w.open_table("").unwrap_err().kind()
}

#[test]
fn read_only_handles_refuse_writes() {
    let (_d, path) = tmp();
    drop(Db::open(&path).unwrap());
    let db = Options::new().read_only(true).open(&path).unwrap();
    assert_eq!(db.begin_write().unwrap_err().kind(), ErrorKind::ReadOnly);
    let missing = path.with_extension("missing");
    let err = Options::new().read_only(true).open(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(!missing.exists());
}
